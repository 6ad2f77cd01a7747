"""Text to speech and the face picture in a real browser, under gradio 3.41.2 (A1111) and 4.40.0 (Forge):
type text, Speak (the audio plays before any lip sync), give the face as a picture, Run: the job gets
the picture as a PNG and the spoken WAV as its audio.

The side environments hold gradio only, as a WebUI does before our install.py; the offline voice
(``espeakng-loader``, which install.py adds to a WebUI) is lent from this environment on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wav2lip_uhq.speech import espeak

REPO = Path(__file__).resolve().parents[1]


def espeak_path(tmp: Path) -> Path:
    """A folder with only ``espeakng_loader`` in it (a link to this environment's copy)."""
    import espeakng_loader

    folder = tmp / "espeak_only"
    folder.mkdir()
    os.symlink(Path(espeakng_loader.__file__).parent, folder / "espeakng_loader")
    return folder


@pytest.mark.slow
@pytest.mark.skipif(not espeak.available(), reason="needs espeakng-loader")
@pytest.mark.parametrize("name", ["gradio3", "gradio4"])
def test_speak_and_face_picture_in_browser_under_host_gradio(name, tmp_path, astronaut_png):
    from test_app_browser import drop_face_picture, speak
    from test_ui_gradio_versions import stand_in_app

    env = {"PYTHONPATH": f"{REPO}{os.pathsep}{espeak_path(tmp_path)}", "WAV2LIP_UHQ_CACHE": str(tmp_path / "cache")}
    with stand_in_app(name, tmp_path, **env) as (page, calls):  # this test does not play the result
        heard = speak(page, "Hello from the browser. This is the second sentence.")
        assert 1.5 < heard["duration"] < 8, heard
        drop_face_picture(page, astronaut_png)
        page.click("#wav2lip_uhq_run")
        page.wait_for_function("sel => document.querySelector(sel).value.startsWith('done')",
                               arg="#wav2lip_uhq_status textarea", timeout=60_000)

    [job] = [json.loads(line) for line in calls.read_text().splitlines()]
    assert job["text"] == "Hello from the browser. This is the second sentence."
    spoken = Path(job["audio"])
    assert spoken.parent == tmp_path / "cache" / "speech" and spoken.suffix == ".wav"
    face = Path(job["face"])
    assert face.suffix == ".png" and face.name.startswith("face_")
    import cv2

    assert (cv2.imread(str(face)) == cv2.imread(str(astronaut_png))).all()  # the picture's own pixels
    assert (tmp_path / "results" / f"{face.stem}_{spoken.stem}.wav").is_file()  # saved beside the result
