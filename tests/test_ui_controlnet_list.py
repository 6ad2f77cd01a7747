"""In the WebUI the ControlNet model is a dropdown of the host's ControlNet list, with a refresh."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_controlnet_dropdown_lists_the_hosts_models_and_refreshes(tmp_path):
    gr = pytest.importorskip("gradio")
    from wav2lip_uhq.ui import UIRunner, build_ui

    listed = [["control_v11p_sd15_canny [d14c016b]"]]
    demo = build_ui(UIRunner(results_dir=tmp_path / "r", models_dir=tmp_path / "m"), need_sd_checkpoint=False,
                    controlnet_models=lambda update: listed[-1] + (["new_tile [0000aaaa]"] if update else []))
    dropdown = demo.wav2lip_uhq_components["controlnet"]
    assert isinstance(dropdown, gr.Dropdown)
    choices = [c[0] if isinstance(c, (list, tuple)) else c for c in dropdown.choices]
    assert choices == ["", "control_v11p_sd15_canny [d14c016b]"] and dropdown.value == ""
    fns = demo.fns.values() if isinstance(demo.fns, dict) else demo.fns
    [refresh] = [f.fn for f in fns if getattr(f.fn, "__name__", "") == "on_refresh" and
                 any(getattr(o, "elem_id", "") == "wav2lip_uhq_controlnet" for o in f.outputs)]
    update = refresh("control_v11p_sd15_canny [d14c016b]")
    assert update["choices"][-1] in ("new_tile [0000aaaa]", ("new_tile [0000aaaa]", "new_tile [0000aaaa]"))
    assert update["value"] == "control_v11p_sd15_canny [d14c016b]"


def test_the_webui_tab_offers_the_controlnet_extensions_models(monkeypatch, tmp_path):
    gr = pytest.importorskip("gradio")
    from fake_webui import install

    from wav2lip_uhq import webui as glue

    monkeypatch.setattr(glue, "_host", None)
    fake = install(monkeypatch, data_path=tmp_path / "webui")
    fake.load_extension(Path(__file__).resolve().parents[1], name="wav2lip-uhq")
    for c in fake.script_callbacks.callback_map["callbacks_ui_settings"]:
        c.callback()
    [(blocks, _, _)] = fake.script_callbacks.callback_map["callbacks_ui_tabs"][0].callback()
    dropdown = blocks.wav2lip_uhq_components["controlnet"]
    assert isinstance(dropdown, gr.Dropdown)
    names = [c[0] if isinstance(c, (list, tuple)) else c for c in dropdown.choices]
    assert names[0] == "" and names[1:] == glue.controlnet_models() and len(names) > 1
