"""``modules/infotext_utils.py`` of WebUI 1.10.1 (before 1.7: ``generation_parameters_copypaste``, kept as
an alias): the "Send to" buttons. A tab registers its picture input with ``add_paste_fields``; a button
is registered with ``register_paste_params_button(ParamBinding(...))``; after every tab is built the
WebUI calls ``connect_paste_params_buttons()``, which wires each button: a gallery source goes through
``image_from_url_text`` (JS ``extract_image_from_gallery`` picks the selected picture), another
image as it is (with its size where the destination has Size fields), then the JS ``switch_to_<tab>``.
"""

from __future__ import annotations

import sys

sys.modules["modules.generation_parameters_copypaste"] = sys.modules[__name__]  # the old name, as 1.10.1


class ParamBinding:
    def __init__(self, paste_button, tabname, source_text_component=None, source_image_component=None,
                 source_tabname=None, override_settings_component=None, paste_field_names=None):
        self.paste_button = paste_button
        self.tabname = tabname
        self.source_text_component = source_text_component
        self.source_image_component = source_image_component
        self.source_tabname = source_tabname
        self.override_settings_component = override_settings_component
        self.paste_field_names = paste_field_names or []


paste_fields: dict[str, dict] = {}
registered_param_bindings: list[ParamBinding] = []


def reset():
    paste_fields.clear()
    registered_param_bindings.clear()


def add_paste_fields(tabname, init_img, fields, override_settings_component=None):
    paste_fields[tabname] = {"init_img": init_img, "fields": fields,
                             "override_settings_component": override_settings_component}


def register_paste_params_button(binding: ParamBinding):
    registered_param_bindings.append(binding)


def image_from_url_text(filedata):
    """A gallery's selected picture as PIL (the fake reads the file path of gradio's value)."""
    from PIL import Image

    if filedata is None:
        return None
    if isinstance(filedata, list):
        if not filedata:
            return None
        filedata = filedata[0]
    if isinstance(filedata, (tuple, list)):
        filedata = filedata[0]
    if isinstance(filedata, dict):
        filedata = filedata.get("name") or filedata.get("path") or (filedata.get("image") or {}).get("path")
    path = getattr(filedata, "path", filedata)
    return Image.open(path)


def send_image_and_dimensions(x):
    from PIL import Image

    img = x if isinstance(x, Image.Image) else image_from_url_text(x)
    return img, img.width, img.height


def _click(button, fn, inputs, outputs, js=None):
    import gradio as gr

    key = "_js" if int(gr.__version__.split(".")[0]) < 4 else "js"  # Forge maps _js to js
    button.click(fn=fn, inputs=inputs, outputs=outputs, show_progress=False, **({key: js} if js else {}))


def connect_paste_params_buttons():
    import gradio as gr

    for binding in registered_param_bindings:
        destination = paste_fields[binding.tabname]["init_img"]
        fields = paste_fields[binding.tabname]["fields"] or []
        width = next((f for f, name in fields if name == "Size-1"), None)
        height = next((f for f, name in fields if name == "Size-2"), None)
        if binding.source_image_component is not None and destination is not None:
            sizes = width is not None and binding.tabname != "inpaint"
            if isinstance(binding.source_image_component, gr.Gallery):
                fn, js = (send_image_and_dimensions if sizes else image_from_url_text), "extract_image_from_gallery"
            else:
                fn, js = (send_image_and_dimensions if sizes else (lambda x: x)), None
            outputs = [destination, width, height] if sizes else [destination]
            _click(binding.paste_button, fn, [binding.source_image_component], outputs, js)
        _click(binding.paste_button, None, None, None, f"switch_to_{binding.tabname}")
