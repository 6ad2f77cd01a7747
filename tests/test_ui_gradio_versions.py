"""The UI under the gradio versions the hosts pin: 3.41.2 (A1111), 4.40.0 (Forge), and ours.

``.ci/prepare`` makes ``.venv-gradio3`` and ``.venv-gradio4`` in the repository root: gradio
with the host's pins, numpy and OpenCV, but no torch and no wav2lip-uhq install (the checkout is
put on PYTHONPATH). ``gradio_build_check.py`` runs in each; a missing environment fails the test
("run .ci/prepare") unless ``WAV2LIP_UHQ_SKIP_EXTRA_ENVS=1``.

The browser tests serve the UI from each environment with a stand-in pipeline (it returns a
ready-made H.264 video) and drive it like a person: upload a face and an mp3, switch modes,
pick the dlib detector, Run, and play the result.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
from test_app_browser import (
    check_mode_visibility,
    check_radio,
    error_toasts,
    expect_error_status,
    free_port,
    missing_extra,
    open_app,
    run_and_play,
    serve,
    server_env,
    status_text,
    upload,
)

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "tests" / "gradio_build_check.py"
ENVS = {"gradio3": (".venv-gradio3", "3.41.2"), "gradio4": (".venv-gradio4", "4.40.0")}


def env_python(name: str) -> Path:
    folder, version = ENVS[name]
    python = REPO / folder / "bin" / "python"
    if not python.is_file():
        missing_extra(f"no gradio {version} environment at {REPO / folder}")
    return python


@contextlib.contextmanager
def stand_in_app(name: str, tmp_path: Path, result: bytes = b"", height: int = 1200, **env: str):
    """The UI served by host gradio ``name`` with the stand-in pipeline (it copies ``result`` as
    the run's video and logs each job's settings to ``calls.jsonl``), opened in Chromium: yields
    (page, calls file). At the end the page must show no error toast and have raised no error."""
    from test_app_browser import chromium_browser

    python = env_python(name)
    port, calls, video = free_port(), tmp_path / "calls.jsonl", tmp_path / "result.mp4"
    video.write_bytes(result)
    cmd = [str(python), str(CHECK), "--serve", str(port), "--result", str(video), "--calls", str(calls),
           "--results-dir", str(tmp_path / "results")]
    env = server_env(tmp_path, **{"PYTHONPATH": str(REPO), **env})
    with serve(cmd, port, tmp_path / "server.log", env, cwd=tmp_path) as url, chromium_browser() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": height})
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        open_app(page, url)
        yield page, calls
        assert error_toasts(page) == [] and page_errors == [], (error_toasts(page), page_errors, status_text(page))
        page.close()


def run_check(python: Path, tmp_path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [str(python), str(CHECK)], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{python}: the UI build check failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout)


@pytest.mark.parametrize("name", list(ENVS))
def test_ui_builds_under_host_gradio(name, tmp_path):
    summary = run_check(env_python(name), tmp_path)
    assert summary["ok"] is True and summary["gradio"] == ENVS[name][1]
    assert summary["torch_imported"] is False
    assert summary["key_components"]["result"] == "video" and summary["key_components"]["mode"] == "dropdown"
    assert summary["mode_change"]["uhq"] == [True, False, True]


def test_ui_builds_under_current_gradio(tmp_path):
    pytest.importorskip("gradio")
    import gradio_build_check

    summary, demo, _ = gradio_build_check.build_check(tmp_path, check_torch=False)  # torch is loaded here
    assert summary["ok"] is True and demo.wav2lip_uhq_components["mode"].value == "improved"
    json.dumps(summary)


# -- in a browser, against each host's gradio ------------------------------------------------------
@pytest.fixture(scope="module")
def result_video(tmp_path_factory, astronaut_png, speech_short) -> Path:
    """A short H.264/yuv420p + AAC mp4, as the pipeline writes: what the stand-in returns."""
    import cv2

    from wav2lip_uhq.video import EncodeSettings, VideoWriter, read_audio_track

    frame = cv2.resize(cv2.imread(str(astronaut_png)), (256, 256))
    path = tmp_path_factory.mktemp("result") / "result.mp4"
    with VideoWriter(path, 256, 256, Fraction(25), read_audio_track(speech_short), EncodeSettings(preset="ultrafast")) as w:
        for i in range(35):
            w.write(cv2.putText(frame.copy(), str(i), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2))
    return path


@pytest.fixture(scope="module")
def speech_mp3(tmp_path_factory, speech_short) -> Path:
    """The speech as an mp3: gradio 3.41/4.40 alone would need ffmpeg on PATH to take it."""
    import av
    import soundfile as sf

    wav, sr = sf.read(speech_short, dtype="float32")
    path = tmp_path_factory.mktemp("mp3") / "speech.mp3"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame", rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(wav[None, :], format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ENVS))
def test_ui_in_browser_under_host_gradio(name, tmp_path, result_video, astronaut_png, speech_mp3):
    from test_app_browser import chromium_browser

    python = env_python(name)
    port = free_port()
    calls = tmp_path / "calls.jsonl"
    cmd = [
        str(python), str(CHECK), "--serve", str(port), "--result", str(result_video),
        "--calls", str(calls), "--results-dir", str(tmp_path / "results"),
    ]  # fmt: skip
    env = server_env(tmp_path, PYTHONPATH=str(REPO))
    with serve(cmd, port, tmp_path / "server.log", env, cwd=tmp_path) as url, chromium_browser() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        open_app(page, url)
        expect_error_status(page, "Add a face video or image")
        page.reload()
        open_app(page, url)

        upload(page, "face", astronaut_png)
        upload(page, "audio", speech_mp3)
        check_mode_visibility(page)  # ends on "fast"
        check_radio(page, "detector", "dlib", accordion="faces_group")
        state = run_and_play(page, timeout_ms=60_000)
        assert abs(state["duration"] - 1.4) < 0.2 and state["width"] == 256, state
        assert status_text(page).startswith("done: astronaut_speech.mp4"), status_text(page)
        assert error_toasts(page) == [] and page_errors == []
        page.close()

    jobs = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert (job["mode"], job["detector"], job["checkpoint"]) == ("fast", "dlib", "wav2lip_gan")
    # the job gets the uploaded files byte for byte: no re-encode of the mp3 through pydub/ffmpeg
    assert Path(job["face"]).read_bytes() == astronaut_png.read_bytes()
    assert Path(job["audio"]).suffix == ".mp3" and Path(job["audio"]).read_bytes() == speech_mp3.read_bytes()
