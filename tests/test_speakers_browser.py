"""Several speakers and time ranges in a real browser, under gradio 3.41.2 (A1111) and 4.40.0 (Forge):
open "Speakers & ranges", give a second voice, ranges and a delay, Preview, click each face in the
preview to give each speaker its face, Run: the job gets both voices, their faces and the ranges.

The stand-in pipeline of ``gradio_build_check.py`` shows the face picture as the preview and calls
its left and right halves the two faces. ``python tests/test_speakers_browser.py --screenshot DIR``
takes docs/screenshots/speakers.png with the real app (the real detector finds the two faces).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def two_faces_picture(path: Path) -> Path:
    """The astronaut's head twice, side by side (the pipeline tests' two-speaker shot)."""
    import cv2
    import skimage.data

    head = skimage.data.astronaut()[20:260, 120:330, ::-1]
    frame = np.full((260, 460, 3), 120, np.uint8)
    frame[10:250, 10:220], frame[10:250, 240:450] = head, head
    cv2.imwrite(str(path), frame)
    return path


def fill_speakers(page, audio: Path, ranges: str = "0-1, 1.5-") -> None:
    """Open the accordion, give speaker 2 its audio, the run's ranges and a delay."""
    from test_app_browser import PREFIX

    page.click(f"{PREFIX}speakers_group .label-wrap")
    page.set_input_files(f"{PREFIX}speaker2_audio input[type=file]", str(audio))
    page.locator(f"{PREFIX}speaker2_audio audio, {PREFIX}speaker2_audio time#duration").first.wait_for(
        state="attached", timeout=30_000)
    page.fill(f"{PREFIX}ranges textarea", ranges)
    page.fill(f"{PREFIX}delay input", "0.25")
    page.press(f"{PREFIX}delay input", "Tab")


def preview_and_pick(page) -> None:
    """Preview, then click the right face for speaker 2 and the left one for speaker 1."""
    from test_app_browser import PREFIX, check_radio

    page.click(f"{PREFIX}preview")
    img = page.locator(f"{PREFIX}preview_image img").first
    img.wait_for(timeout=60_000)
    page.wait_for_function("sel => document.querySelector(sel)?.naturalWidth > 0",
                           arg=f"{PREFIX}preview_image img", timeout=30_000)
    for speaker, at, field, want in (("2", 0.75, "speaker2_face", "1"), ("1", 0.25, "face_index", "0")):
        check_radio(page, "face_pick", speaker)
        box = img.bounding_box()
        img.click(position={"x": box["width"] * at, "y": box["height"] / 2})
        page.wait_for_function("([sel, v]) => document.querySelector(sel)?.value === v",
                               arg=[f"{PREFIX}{field} input", want], timeout=30_000)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gradio3", "gradio4"])
def test_speakers_and_ranges_in_browser_under_host_gradio(name, tmp_path, speech_short):
    from test_app_browser import PREFIX, upload
    from test_ui_gradio_versions import stand_in_app

    face = two_faces_picture(tmp_path / "two.png")
    with stand_in_app(name, tmp_path, height=1400, WAV2LIP_UHQ_CACHE=str(tmp_path / "cache")) as (page, calls):
        upload(page, "face", face)
        upload(page, "audio", speech_short)
        fill_speakers(page, speech_short)
        preview_and_pick(page)
        page.click(f"{PREFIX}run")
        page.wait_for_function("sel => document.querySelector(sel).value.startsWith('done')",
                               arg=f"{PREFIX}status textarea", timeout=60_000)

    [job] = [json.loads(line) for line in calls.read_text().splitlines()]
    assert job["face_index"] == 0 and job["ranges"] == ["0-1", "1.5-"] and job["delay"] == 0.25, job
    [(index, audio, ranges)] = job["speakers"]
    assert index == 1 and ranges == [] and Path(audio).read_bytes() == speech_short.read_bytes(), job


def take_speakers_screenshot(out: Path) -> None:
    """speakers.png: the accordion filled in, the preview of a two-face picture after the clicks."""
    import os
    import subprocess
    import tempfile

    import soundfile as sf
    from test_app_browser import check_radio, chromium_browser, free_port, open_app, serve, server_env, upload

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="w2l_shots_") as tmp_name, chromium_browser() as browser:
        tmp = Path(tmp_name)
        ckpt = tmp / "wav2lip_gan.pth"
        subprocess.run([sys.executable, "-c", (
            "import sys, torch; from wav2lip_uhq.models import Wav2Lip; from wav2lip_uhq.models.fill import "
            "fill_rule_state_dict; sd = fill_rule_state_dict(Wav2Lip(96)); "
            "torch.save({'state_dict': {'module.' + k: v for k, v in sd.items()}}, sys.argv[1])"), str(ckpt)],
            check=True)
        face = two_faces_picture(tmp / "two_speakers.png")
        reference = REPO.parent / "shared" / "reference"
        wav, sr = sf.read(reference / "speech_16k.wav", dtype="float32")
        first, second = tmp / "first.wav", tmp / "second.wav"
        sf.write(first, wav[: 2 * sr], sr)
        sf.write(second, wav[2 * sr : 4 * sr], sr)
        (tmp / "models").mkdir()
        os.symlink(ckpt, tmp / "models" / "wav2lip_gan.pth")
        port = free_port()
        cmd = [sys.executable, "-m", "wav2lip_uhq", "app", "--port", str(port), "--models-dir", str(tmp / "models"),
               "--results-dir", str(tmp / "results"), "--cache-dir", str(tmp / "cache"), "--device", "cpu"]
        env = server_env(tmp, PYTHONPATH=str(REPO))  # this checkout's package, not an installed one
        with serve(cmd, port, tmp / "app.log", env, cwd=tmp) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            open_app(page, url)
            upload(page, "face", face)
            upload(page, "audio", first)
            check_radio(page, "detector", "dlib", accordion="faces_group")  # offline: no S3FD download
            page.click("#wav2lip_uhq_faces_group .label-wrap")  # folded again, for the picture
            fill_speakers(page, second, ranges="")  # a still image: no ranges
            preview_and_pick(page)
            page.screenshot(path=str(out / "speakers.png"), full_page=True,
                            clip={"x": 0, "y": 0, "width": 1400, "height": 2150})  # down to the accordion's end


if __name__ == "__main__":
    import argparse

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    parser = argparse.ArgumentParser()
    parser.add_argument("--screenshot", type=Path, required=True, help="folder for speakers.png")
    take_speakers_screenshot(parser.parse_args().screenshot)
