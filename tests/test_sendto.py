"""The "Send to" buttons in the WebUI (fake of 1.10.1's ``infotext_utils``, the component callbacks and
``ToolButton``): "Send to Wav2Lip UHQ" beside "Send to extras" under the txt2img, img2img and Extras
results, our preview frame to img2img / Extras, and a sent picture becoming the face input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from fake_webui import install

REPO = Path(__file__).resolve().parents[1]
gr = pytest.importorskip("gradio")


@pytest.fixture
def webui(monkeypatch, tmp_path):
    from wav2lip_uhq import webui as glue

    monkeypatch.setattr(glue, "_host", None)
    monkeypatch.setattr(glue, "_result_galleries", {})
    fake = install(monkeypatch, data_path=tmp_path / "webui")
    fake.load_extension(REPO, name="wav2lip-uhq")
    from modules import infotext_utils

    infotext_utils.reset()  # as the WebUI does at the start of every UI build
    return fake


def result_panel(tab: str):
    """What the WebUI's ``create_output_panel`` makes for a tab: the gallery, then a row of Send
    buttons, each followed by the after-component callbacks (the WebUI's component init hook)."""
    from modules import script_callbacks

    gallery = gr.Gallery(elem_id=f"{tab}_gallery")
    script_callbacks.after_component_callback(gallery, elem_id=f"{tab}_gallery")
    with gr.Row() as row:
        for target in ("img2img", "inpaint", "extras"):
            button = gr.Button(target, elem_id=f"{tab}_send_to_{target}")
            script_callbacks.after_component_callback(button, elem_id=f"{tab}_send_to_{target}")
    return gallery, row


def build_webui_page():
    """txt2img/img2img/Extras results and destinations, then the extension tabs, then the wiring."""
    from modules import infotext_utils, script_callbacks

    with gr.Blocks() as demo:
        panels = {tab: result_panel(tab) for tab in ("txt2img", "img2img", "extras")}
        init, width, height = gr.Image(type="pil"), gr.Slider(64, 2048), gr.Slider(64, 2048)
        infotext_utils.add_paste_fields("img2img", init, [(width, "Size-1"), (height, "Size-2")])
        infotext_utils.add_paste_fields("extras", gr.Image(type="pil"), None)
        [(tab_blocks, _title, _tab_id)] = script_callbacks.ui_tabs_callback()
        infotext_utils.connect_paste_params_buttons()
    return demo, panels, tab_blocks.wav2lip_uhq_components


def test_send_to_wav2lip_uhq_sits_beside_the_webuis_own_buttons(webui):
    from modules import infotext_utils

    demo, panels, comps = build_webui_page()
    ours = [b for b in infotext_utils.registered_param_bindings if b.tabname == "wav2lip_uhq"]
    assert len(ours) == 3
    for tab, (gallery, row) in panels.items():
        [binding] = [b for b in ours if b.source_image_component is gallery]
        button = binding.paste_button
        assert button.elem_id == f"{tab}_send_to_wav2lip_uhq" and "tool" in button.elem_classes
        assert row.children[-1] is button  # in the row, after "Send to extras"
        assert "Wav2Lip UHQ" in button.tooltip
    assert infotext_utils.paste_fields["wav2lip_uhq"]["init_img"] is comps["face_image"]
    # wired: a click on our button sends the gallery's picture into the face picture, then switches tab
    gallery = panels["txt2img"][0]
    [button] = [b.paste_button for b in ours if b.source_image_component is gallery]
    clicks = [d for d in demo.config["dependencies"] if [button._id, "click"] in [list(t) for t in d["targets"]]]
    assert any(d["inputs"] == [gallery._id] and d["outputs"] == [comps["face_image"]._id] for d in clicks)
    assert any(d["js"] and "switch_to_wav2lip_uhq" in d["js"] for d in clicks)


def test_the_preview_frame_goes_to_img2img_and_extras(webui):
    from modules import infotext_utils

    _demo, _panels, comps = build_webui_page()
    frame = [b for b in infotext_utils.registered_param_bindings if b.source_image_component is comps["preview_image"]]
    assert {b.tabname: b.paste_button for b in frame} == {"img2img": comps["send_to_img2img"],
                                                           "extras": comps["send_to_extras"]}
    assert comps["preview_image"].type == "pil"  # what send_image_and_dimensions takes as it is


def test_a_sent_picture_becomes_the_face(webui, tmp_path, astronaut_png):
    """The bound function's output (a PIL picture from the gallery) lands in the face picture, whose
    change hands a PNG of the same pixels to the face input; the same picture gives the same file."""
    from modules import infotext_utils

    from wav2lip_uhq.ui.handlers import Handlers
    from wav2lip_uhq.ui_runner import UIRunner

    picture = infotext_utils.image_from_url_text([{"name": str(astronaut_png), "is_file": True}])
    h = Handlers(UIRunner(results_dir=tmp_path / "r", cache_dir=tmp_path / "c"))
    face = Path(h.face_from_image(picture))
    assert face.parent == tmp_path / "c" / "faces" and face.suffix == ".png"
    import cv2

    assert np.array_equal(cv2.imread(str(face))[:, :, ::-1], np.asarray(picture.convert("RGB")))
    assert Path(h.face_from_image(picture)) == face  # no second copy
    assert h.face_from_image(None) == gr.update()  # a cleared picture leaves the face as it is


def test_a_webui_without_paste_buttons_still_gets_the_tab(webui, monkeypatch, caplog):
    import modules

    for name in ("infotext_utils", "generation_parameters_copypaste"):  # a WebUI before 1.x paste buttons
        monkeypatch.setitem(sys.modules, f"modules.{name}", None)
        monkeypatch.delattr(modules, name, raising=False)
    from modules import script_callbacks

    with gr.Blocks():
        [(blocks, title, _)] = script_callbacks.ui_tabs_callback()
    assert title == "Wav2Lip UHQ" and "face_image" in blocks.wav2lip_uhq_components
    assert "no Send to buttons" in caplog.text
