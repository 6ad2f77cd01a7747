"""The Resume button in a real browser, under gradio 3.41.2 (A1111) and 4.40.0 (Forge): a job
interrupted by the real pipeline shows as "<face> + <audio> -> <output>: N/M frames done";
Resume runs it with its own saved settings (``resume`` on, its output path).

``python tests/test_resume_browser.py --screenshot docs/screenshots`` writes resume.png from the
standalone app of this environment.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INFO = "#wav2lip_uhq_resume_info textarea"


def interrupted_job(face: Path, audio: Path, checkpoint: Path, tmp: Path) -> Path:
    """An interrupted job in ``tmp/cache`` (10 of 35 frames written), its output in ``tmp/results``;
    returns that output's path."""
    from test_resume import interrupt_after, make_config

    from wav2lip_uhq.pipeline import LipSyncPipeline

    own = tmp / "speech.wav"
    shutil.copyfile(audio, own)
    config = make_config(face, own, checkpoint, tmp, None, results_dir=tmp / "results")
    interrupt_after(LipSyncPipeline("cpu"), config, 10)
    return tmp / "results" / f"{Path(face).stem}_speech.mkv"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gradio3", "gradio4"])
def test_resume_button_in_browser_under_host_gradio(name, tmp_path, moving_face_video, speech_short,
                                                    w2l_checkpoint):
    from test_ui_gradio_versions import stand_in_app

    out = interrupted_job(moving_face_video, speech_short, w2l_checkpoint, tmp_path)
    with stand_in_app(name, tmp_path, WAV2LIP_UHQ_CACHE=str(tmp_path / "cache")) as (page, calls):
        page.locator("#wav2lip_uhq_resume").wait_for(state="visible", timeout=30_000)
        assert page.input_value(INFO).startswith("moving.mkv + speech.wav -> moving_speech.mkv: "
                                                 "10/35 frames done"), page.input_value(INFO)
        page.click("#wav2lip_uhq_resume")
        page.wait_for_function("sel => document.querySelector(sel).value.startsWith('done')",
                               arg="#wav2lip_uhq_status textarea", timeout=60_000)

    [job] = [json.loads(line) for line in calls.read_text().splitlines()]
    assert job["resume"] is True and job["out"] == str(out)  # the job's own output and settings
    assert job["face"] == str(moving_face_video) and job["audio"] == str(tmp_path / "speech.wav")
    assert job["mode"] == "improved" and job["detector"] == "dlib" and job["checkpoint"] == str(w2l_checkpoint)


def take_resume_screenshot(folder: Path) -> None:
    """resume.png: the app with an interrupted job (rule-filled test generator, offline)."""
    import tempfile

    import soundfile as sf
    import torch
    from media_helpers import moving_face_frames, write_video
    from test_app_browser import chromium_browser, free_port, open_app, serve, server_env

    from wav2lip_uhq.models import Wav2Lip
    from wav2lip_uhq.models.fill import fill_rule_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="w2l_shots_") as name, chromium_browser() as browser:
        tmp = Path(name)
        ckpt = tmp / "wav2lip_gan.pth"
        torch.save({"state_dict": {"module." + k: v for k, v in fill_rule_state_dict(Wav2Lip(96)).items()}}, ckpt)
        face = write_video(tmp / "interview.mkv", moving_face_frames(40)[0])
        reference = Path(os.environ.get("WAV2LIP_UHQ_REFERENCE") or REPO.parent / "shared" / "reference")
        wav, sr = sf.read(reference / "speech_16k.wav", dtype="float32")
        sf.write(tmp / "voice.wav", wav[: int(1.4 * sr)], sr)
        interrupted_job(face, tmp / "voice.wav", ckpt, tmp)
        port = free_port()
        cmd = [sys.executable, "-m", "wav2lip_uhq", "app", "--port", str(port), "--results-dir", str(tmp / "results"),
               "--cache-dir", str(tmp / "cache"), "--device", "cpu"]
        with serve(cmd, port, tmp / "app.log", server_env(tmp, PYTHONPATH=str(REPO)), cwd=tmp) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_app(page, url)
            page.locator("#wav2lip_uhq_resume").wait_for(state="visible", timeout=30_000)
            box = page.locator("#wav2lip_uhq_resume_info").bounding_box()
            page.screenshot(path=str(folder / "resume.png"),
                            clip={"x": max(0, box["x"] - 20), "y": max(0, box["y"] - 260), "width": 720, "height": 420})


if __name__ == "__main__":
    import argparse

    sys.path[:0] = [str(REPO), str(Path(__file__).parent)]
    parser = argparse.ArgumentParser()
    parser.add_argument("--screenshot", type=Path, required=True, help="folder for resume.png")
    take_resume_screenshot(parser.parse_args().screenshot)
