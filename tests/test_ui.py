"""The shared UI: pure config mapping, the job runner, the gradio build, the app subcommand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wav2lip_uhq.config import FaceOptions, RunConfig


def test_import_does_not_load_torch_or_gradio():
    code = (
        "import sys, wav2lip_uhq.ui, wav2lip_uhq.ui_runner; "
        "assert 'torch' not in sys.modules, 'torch'; assert 'gradio' not in sys.modules, 'gradio'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def inputs(tmp_path):
    face, audio = tmp_path / "face.png", tmp_path / "speech.wav"
    face.write_bytes(b"x")
    audio.write_bytes(b"x")
    return {"face": str(face), "audio": str(audio)}


def test_config_from_ui_defaults(inputs):
    from wav2lip_uhq.ui import config_from_ui

    c = config_from_ui(inputs)
    d = RunConfig(face=inputs["face"], audio=inputs["audio"])
    assert c.mode == "improved" and c.checkpoint == "wav2lip_gan"
    assert c.faces == d.faces and c.composite == d.composite and c.frames == d.frames
    assert c.refine.prompt == d.refine.prompt and c.refine.denoise == d.refine.denoise
    assert c.out is None and c.results_dir == Path("results")


def test_config_from_ui_maps_fields(inputs, tmp_path):
    from wav2lip_uhq.ui import config_from_ui

    class TempFile:  # gradio 3.x gives tempfile wrappers with .name
        name = inputs["face"]

    sd = tmp_path / "sd15.safetensors"
    values = {
        **inputs,
        "face": TempFile(),
        "mode": "uhq",
        "pad_top": 5.0, "pad_bottom": 20, "pad_left": 2, "pad_right": 3,  # gr.Number may give floats
        "box": "80, 200 170 280",
        "face_index": 1,
        "smoothing": "none",
        "mask_region": "mouth", "mask_dilate": 0.05, "mask_feather": 0.2, "colour_match": False,
        "blend": "laplacian", "sharpen": 0.5, "regrain": True, "silence": "close",
        "restorer": " ", "restore_strength": 0.4,
        "sd_checkpoint": str(sd), "prompt": "teeth", "negative_prompt": "", "denoise": 0.45, "steps": 12,
        "cfg": 2.0, "sampler": "lcm", "seed": 7,
        "controlnet": "cn_canny", "controlnet_preprocessor": "tile", "controlnet_weight": 0.8,
        "controlnet_start": 0.1, "controlnet_end": 0.9,
        "crf": 20, "batch_size": 8, "results_dir": tmp_path / "res", "models_dir": str(tmp_path),
        "checkpoint": "my_w2l.pth",
    }
    c = config_from_ui(values)
    assert c.face == Path(inputs["face"]) and c.mode == "uhq"
    assert c.faces.pads == (5, 20, 2, 3) and all(isinstance(p, int) for p in c.faces.pads)
    assert c.faces.box == (80, 200, 170, 280) and c.faces.face_index == 1 and c.faces.smoothing == "none"
    k = c.composite
    assert (k.mask_region, k.mask_dilate, k.mask_feather, k.colour_match) == ("mouth", 0.05, 0.2, False)
    assert (k.blend, k.sharpen, k.regrain, k.silence, k.restorer, k.restore_strength) == (
        "laplacian", 0.5, True, "close", None, 0.4)
    r = c.refine
    assert r.checkpoint == sd and r.prompt == "teeth" and r.negative_prompt == ""
    assert (r.denoise, r.steps, r.cfg, r.sampler, r.seed) == (0.45, 12, 2.0, "lcm", 7)
    assert len(r.controlnets) == 1
    cn = r.controlnets[0]
    assert (cn.model, cn.preprocessor, cn.weight, cn.guidance_start, cn.guidance_end) == ("cn_canny", "tile", 0.8, 0.1, 0.9)
    assert c.encode.crf == 20 and c.batch_size == 8 and c.results_dir == tmp_path / "res"
    assert c.checkpoint == tmp_path / "my_w2l.pth"  # a file name from the models folder
    json.dumps(c.to_dict())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"face": None}, "face video or image"),
        ({"audio": ""}, "audio file"),
        ({"face": None, "audio": None}, "face video or image and an audio"),
        ({"face": "/nonexistent/face.mp4"}, "face file not found"),
        ({"mode": "turbo"}, "mode"),
        ({"box": "1 2 3"}, "four whole numbers"),
        ({"box": "200 80 170 280"}, "top < bottom"),
        ({"pad_top": "a lot"}, "top padding"),
        ({"pad_left": 2.5}, "whole number"),
        ({"mask_feather": -1}, "mask feather must be between"),
        ({"face_index": -3}, "face index must be at least -1"),
        ({"mode": "uhq"}, "Stable Diffusion"),
        ({"mode": "uhq", "sd_checkpoint": "sd.safetensors", "controlnet": "c", "controlnet_start": 0.8,
          "controlnet_end": 0.2}, "guidance start"),
        ({"batch_size": 0}, "batch size"),
    ],
)
def test_config_from_ui_rejects_bad_input(inputs, change, message):
    from wav2lip_uhq.ui import UIInputError, config_from_ui

    with pytest.raises(UIInputError, match=message):
        config_from_ui({**inputs, **change})


def test_uhq_without_sd_checkpoint_when_the_host_supplies_it(inputs):
    from wav2lip_uhq.ui import config_from_ui

    assert config_from_ui({**inputs, "mode": "uhq"}, need_sd_checkpoint=False).refine.checkpoint is None


def test_visibility_and_mode_change():
    pytest.importorskip("gradio")
    from wav2lip_uhq.ui import mode_change, visibility_for_mode

    assert visibility_for_mode("fast") == {"mask": False, "restore": False, "refine": False}
    assert visibility_for_mode("enhanced") == {"mask": True, "restore": True, "refine": False}
    mask, restore, refine = mode_change("uhq")
    assert mask["visible"] is True and restore["visible"] is False and refine["visible"] is True
    assert mode_change("improved")[2]["visible"] is False


def test_build_ui(tmp_path):
    gr = pytest.importorskip("gradio")
    from wav2lip_uhq.ui import DEFAULTS, UIRunner, build_ui

    demo = build_ui(UIRunner(results_dir=tmp_path / "res", models_dir=tmp_path / "models"))
    assert isinstance(demo, gr.Blocks)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert all(e.startswith("wav2lip_uhq_") for e in by_id)
    for key in DEFAULTS:
        assert f"wav2lip_uhq_{key}" in by_id, key
    for name in ("run", "interrupt", "preview", "preview_image", "preview_overlay", "status", "result",
                 "settings", "recent", "mask_group", "restore_group", "refine_group"):
        assert f"wav2lip_uhq_{name}" in by_id, name
    assert by_id["wav2lip_uhq_refine_group"].visible is False
    assert by_id["wav2lip_uhq_restore_group"].visible is False
    assert by_id["wav2lip_uhq_mask_group"].visible is not False
    assert by_id["wav2lip_uhq_mode"].value == "improved"
    assert "wav2lip_gan" in by_id["wav2lip_uhq_checkpoint"].choices or any(
        "wav2lip_gan" in str(c) for c in by_id["wav2lip_uhq_checkpoint"].choices)


def _fast_config(face, audio, ckpt, tmp_path, **kw) -> RunConfig:
    return RunConfig(face=face, audio=audio, checkpoint=ckpt, mode="fast", faces=FaceOptions(box=(80, 200, 170, 280)),
                     batch_size=4, cache_dir=tmp_path / "cache", results_dir=tmp_path / "res", device="cpu", **kw)


def test_runner_runs_a_job(astronaut_png, speech_short, w2l_checkpoint, tmp_path):
    from wav2lip_uhq.ui_runner import RunnerBusy, UIRunner, load_settings

    runner = UIRunner(results_dir=tmp_path / "res", device="cpu")
    job = runner.run(_fast_config(astronaut_png, speech_short, w2l_checkpoint, tmp_path), timeout=120)
    out = job.result.output
    assert out.is_file() and out.parent == tmp_path / "res"
    settings = load_settings(out)
    assert job.settings_path == Path(f"{out}.json") and settings["mode"] == "fast"
    assert settings["out"] == str(out) and settings["faces"]["box"] == [80, 200, 170, 280]
    stages = [s for s, _, _ in job.progress_log]
    assert "lip-sync" in " ".join(stages) or any(t > 1 for _, _, t in job.progress_log), job.progress_log
    framed = [(d, t) for _, d, t in job.progress_log if t > 1]
    assert framed and framed[-1][0] == framed[-1][1]  # reached x/x
    assert runner.progress_text().startswith("done:") and not runner.busy
    assert runner.recent_results() == [out]

    # one job at a time
    runner._lock.acquire()
    try:
        with pytest.raises(RunnerBusy):
            runner.start(_fast_config(astronaut_png, speech_short, w2l_checkpoint, tmp_path))
    finally:
        runner._lock.release()


def test_runner_cancel_leaves_no_output(astronaut_png, speech_short, w2l_checkpoint, tmp_path):
    from wav2lip_uhq.errors import Cancelled
    from wav2lip_uhq.ui_runner import UIRunner

    runner = UIRunner(results_dir=tmp_path / "res", device="cpu")
    original = runner.pipeline.run

    def run_and_interrupt(config, progress=None, cancel=None):  # Interrupt pressed once the job reports
        def report(stage, done, total):
            progress(stage, done, total)
            runner.cancel()

        return original(config, progress=report, cancel=cancel)

    runner.pipeline.run = run_and_interrupt
    with pytest.raises(Cancelled):
        runner.run(_fast_config(astronaut_png, speech_short, w2l_checkpoint, tmp_path), timeout=120)
    assert runner.job.cancelled and runner.progress_text() == (
        "interrupted: no output written; nothing to resume yet: no segment (10 s of video) was finished")
    assert list((tmp_path / "res").iterdir()) == []  # no video, no partial file, no settings
    assert runner.recent_results() == [] and not runner.busy
    assert runner.cancel() is False  # nothing running


def test_ui_run_handler_end_to_end(astronaut_png, speech_short, w2l_checkpoint, tmp_path):
    """The Run button's generator: progress text, then the video, its settings and the recent list."""
    pytest.importorskip("gradio")
    from wav2lip_uhq.ui import UI_KEYS, UIRunner, build_ui

    runner = UIRunner(results_dir=tmp_path / "res", cache_dir=tmp_path / "cache", device="cpu")
    demo = build_ui(runner)
    fns = [f.fn for f in _block_fns(demo) if getattr(f.fn, "__name__", "") == "run"]
    assert len(fns) == 1
    values = {k: None for k in UI_KEYS}
    from wav2lip_uhq.ui import DEFAULTS

    values.update(DEFAULTS)
    values.update(face=str(astronaut_png), audio=str(speech_short), mode="fast", checkpoint=str(w2l_checkpoint),
                  box="80 200 170 280", batch_size=4)
    updates = list(fns[0](*[values[k] for k in UI_KEYS]))
    status, video, summary, settings, recent, gallery, extra_files = updates[-1]
    assert extra_files["value"] is None and extra_files["visible"] is False  # none asked for (test_extra_outputs asks)
    assert status.startswith("done:") and Path(video).is_file() and settings["mode"] == "fast"
    assert summary.startswith("done:") and "mode fast" in summary  # one line; the JSON sits folded
    assert recent["value"] == video
    [(thumb, caption)] = gallery["value"]  # the new result's first frame in the gallery
    assert caption == Path(video).name and Path(thumb).is_file()
    assert Path(tmp_path / "cache") in Path(thumb).parents  # not beside the results
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == sorted([Path(video).name, Path(video).name + ".json"])
    select = [f.fn for f in _block_fns(demo) if getattr(f.fn, "__name__", "") == "on_gallery_select"]
    import gradio as gr

    picked = select[0](gr.SelectData(None, {"index": 0, "value": None}))
    assert picked[0] == video and picked[1]["mode"] == "fast"


def _block_fns(demo):
    fns = demo.fns
    return list(fns.values()) if isinstance(fns, dict) else list(fns)


def test_app_command_without_gradio(monkeypatch, capsys):
    from wav2lip_uhq import cli

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert cli.main(["app"]) == 2
    assert 'pip install "wav2lip-uhq[ui]"' in capsys.readouterr().err


def test_app_command_launches_on_localhost(monkeypatch, tmp_path):
    pytest.importorskip("gradio")
    from wav2lip_uhq import cli, ui

    seen = {}
    monkeypatch.setattr(ui, "launch", lambda **kw: seen.update(kw))
    assert cli.main(["app", "--results-dir", str(tmp_path / "r"), "--port", "7999"]) == 0
    assert seen["listen"] is False and seen["port"] == 7999 and seen["share"] is False
    assert seen["runner"].results_dir == tmp_path / "r"
    assert cli.main(["app", "--listen"]) == 0 and seen["listen"] is True


def test_uploads_are_shown_by_their_file_names(tmp_path):
    import tempfile

    from wav2lip_uhq.ui_runner import shown_path

    upload = Path(tempfile.gettempdir()) / "gradio" / "0a1b2c" / "my face.png"
    assert shown_path(upload) == "my face.png"
    assert shown_path("/srv/media/talk.mp4") == "/srv/media/talk.mp4"
