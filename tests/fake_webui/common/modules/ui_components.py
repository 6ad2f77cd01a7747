"""``modules/ui_components.py``: present (WebUI >= 1.6) but not usable in the fake (no gradio UI)."""


class _NotInFake:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: gradio components are not part of the fake WebUI")


class FormRow(_NotInFake):
    pass


class FormColumn(_NotInFake):
    pass


class FormGroup(_NotInFake):
    pass


class ToolButton(_NotInFake):
    pass


class InputAccordion(_NotInFake):
    pass
