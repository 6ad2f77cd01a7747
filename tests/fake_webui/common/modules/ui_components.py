"""``modules/ui_components.py``: present (WebUI >= 1.6). The layout helpers are not usable in the fake
(no WebUI page); ``ToolButton`` is, as in 1.10.1 a ``gr.Button`` with the ``tool`` class (made when first
used, so the fake imports without gradio), for the "Send to" buttons next to the WebUI's own."""


class _NotInFake:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: gradio components are not part of the fake WebUI")


class FormRow(_NotInFake):
    pass


class FormColumn(_NotInFake):
    pass


class FormGroup(_NotInFake):
    pass


class InputAccordion(_NotInFake):
    pass


def _tool_button_class():
    import gradio as gr

    class ToolButton(gr.Button):
        """A small button; ``tooltip`` is the WebUI's own keyword (its gradio patch), kept as an attribute."""

        def __init__(self, *args, **kwargs):
            self.tooltip = kwargs.pop("tooltip", None)
            classes = kwargs.pop("elem_classes", [])
            super().__init__(*args, elem_classes=["tool", *classes], **kwargs)

    return ToolButton


def __getattr__(name):
    if name == "ToolButton":
        cls = globals()["ToolButton"] = _tool_button_class()
        return cls
    raise AttributeError(name)
