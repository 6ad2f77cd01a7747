"""The standalone app in a real browser: upload, Run, and a result video that plays.

``python -m wav2lip_uhq app`` runs in a subprocess with a models folder that holds the
generated checkpoint; Playwright drives Debian's Chromium (``/usr/bin/chromium``, installed by
``.ci/prepare``; Playwright never downloads a browser here). A missing browser or Playwright
fails the test unless ``WAV2LIP_UHQ_SKIP_EXTRA_ENVS=1``.

The helpers here are shared with ``test_ui_gradio_versions.py`` (the same page flow against the
UI under gradio 3.41.2 and 4.40.0). ``python tests/test_app_browser.py --screenshots DIR`` takes
the README screenshots (not part of the test run).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("WAV2LIP_UHQ_CHROMIUM", "/usr/bin/chromium")
# What this machine's closed network needs (no background connections, no QUIC, no updates).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
PREFIX = "#wav2lip_uhq_"
ERROR_TOASTS = ".toast-body.error, [data-testid='toast-body'].error"


def missing_extra(what: str) -> None:
    """Fail (CI must not skip silently), or skip where WAV2LIP_UHQ_SKIP_EXTRA_ENVS=1."""
    message = f"{what}: run .ci/prepare (or set WAV2LIP_UHQ_SKIP_EXTRA_ENVS=1 to skip this test)"
    if os.environ.get("WAV2LIP_UHQ_SKIP_EXTRA_ENVS") == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


@contextlib.contextmanager
def chromium_browser():
    """A headless Debian Chromium driven by Playwright (fresh profile, offline flags)."""
    if not Path(CHROMIUM).is_file():
        missing_extra(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_extra("the playwright package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as b:
        yield b


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(tmp: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env.update(
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_TEMP_DIR=str(tmp / "gradio_tmp"),  # uploads stay under the test's folder
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),  # this checkout
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def serve(cmd: list[str], port: int, log: Path, env: dict, cwd: Path, timeout: float = 120):
    """Run a gradio server; yield its URL once it answers, stop it afterwards."""
    url = f"http://127.0.0.1:{port}/"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited ({proc.returncode}):\n{log.read_text(errors='replace')[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer in {timeout:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the page flow (gradio 3.41, 4.40 and current) -------------------------------------------------
def open_app(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"{PREFIX}run", timeout=60_000)


def upload(page, elem: str, path: Path) -> None:
    page.set_input_files(f"{PREFIX}{elem} input[type=file]", str(path))


def choose(page, elem: str, value: str) -> None:
    """Pick ``value`` in a dropdown (4+: options portalled with role=option; 3.41: ul.options li)."""
    page.click(f"{PREFIX}{elem} input")
    options = page.locator("[role=option]:visible, ul.options li.item:visible")
    options.filter(has_text=re.compile(rf"(^|\W){re.escape(value)}\s*$")).first.click()
    page.wait_for_function(
        "([sel, v]) => document.querySelector(sel)?.value === v", arg=[f"{PREFIX}{elem} input", value]
    )


def check_radio(page, elem: str, value: str, accordion: str | None = None) -> None:
    label = page.locator(f"{PREFIX}{elem} label").filter(has_text=re.compile(rf"^\s*{re.escape(value)}\s*$"))
    if accordion and not label.first.is_visible():
        page.click(f"{PREFIX}{accordion} .label-wrap")  # open the accordion
    label.first.click()
    assert label.first.locator("input").is_checked()


def status_text(page) -> str:
    return page.input_value(f"{PREFIX}status textarea")


def error_toasts(page) -> list[str]:
    return [t.strip() for t in page.locator(ERROR_TOASTS).all_inner_texts()]


def expect_error_status(page, message: str) -> None:
    """Run with no inputs: the message is in the status, and no output is marked as failed (gradio 4
    puts a red "Error" on every output of an event that raises)."""
    page.click(f"{PREFIX}run")
    page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel) || {}).value?.includes(text)",
        arg=[f"{PREFIX}status textarea", message], timeout=30_000, polling=100,
    )
    assert status_text(page).startswith("error: ")
    assert not [e for e in page.locator("[id^='wav2lip_uhq_'] span.error").all() if e.is_visible()]
    assert not error_toasts(page)


def check_mode_visibility(page) -> None:
    """The mode dropdown shows the refinement settings for uhq and hides the mask for fast."""
    choose(page, "mode", "uhq")
    page.locator(f"{PREFIX}refine_group").wait_for(state="visible", timeout=10_000)
    assert page.locator(f"{PREFIX}mask_group").is_visible()
    choose(page, "mode", "fast")
    page.locator(f"{PREFIX}mask_group").wait_for(state="hidden", timeout=10_000)
    assert not page.locator(f"{PREFIX}refine_group").is_visible()


# A failed event shows a toast (4+, and gr.Error in 3.41) or "Error" in the outputs' status trackers.
SHOWN_ERRORS = f"{ERROR_TOASTS}, [id^='wav2lip_uhq_'] span.error"
WAIT_JS = f"""sel => document.querySelector(sel) ||
  [...document.querySelectorAll("{SHOWN_ERRORS}")].some(e => e.offsetParent !== null)"""
PLAY_JS = """async (sel) => {
  const v = document.querySelector(sel);
  v.muted = true;  // autoplay rules: muted playback needs no user gesture
  if (v.readyState < 1) {
    await new Promise((ok, bad) => {
      v.addEventListener('loadedmetadata', ok, {once: true});
      v.addEventListener('error', () => bad(new Error('video error ' + (v.error && v.error.code))), {once: true});
    });
  }
  await v.play();
  const t0 = v.currentTime;
  const until = Date.now() + 5000;
  while (v.currentTime <= t0 + 0.2 && Date.now() < until) await new Promise(r => setTimeout(r, 50));
  const state = {src: v.currentSrc, duration: v.duration, t0, t1: v.currentTime, width: v.videoWidth,
                 height: v.videoHeight, error: v.error && v.error.code};
  v.pause();
  return state;
}"""


def run_and_play(page, timeout_ms: int) -> dict:
    """Press Run, wait for the result video, play it; returns the <video> element's state."""
    page.click(f"{PREFIX}run")
    video = f"{PREFIX}result video"
    page.wait_for_function(WAIT_JS, arg=f"{video}[src]", timeout=timeout_ms, polling=250)
    if page.locator(f"{video}[src]").count() == 0:
        shown = page.locator(SHOWN_ERRORS).all_inner_texts()
        raise AssertionError(f"Run ended in an error, no video: {shown}; status {status_text(page)!r}")
    page.wait_for_function(
        "sel => document.querySelector(sel).value.startsWith('done')",
        arg=f"{PREFIX}status textarea",
        timeout=30_000,
    )
    state = page.evaluate(PLAY_JS, video)
    assert state["error"] is None, state
    assert state["duration"] > 0 and state["width"] > 0 and state["height"] > 0, state
    assert state["t1"] > state["t0"], f"the video does not advance: {state}"
    return state


HEARD_JS = f"""([audio, shown]) => document.querySelector(audio) ||
  (document.querySelector(shown) && document.querySelector(shown).textContent.trim() !== "0:00") ||
  [...document.querySelectorAll("{SHOWN_ERRORS}")].some(e => e.offsetParent !== null)"""
AUDIO_JS = """async (a) => {
  if (a.readyState < 1) {
    await new Promise((ok, bad) => {
      a.addEventListener('loadedmetadata', ok, {once: true});
      a.addEventListener('error', () => bad(new Error('audio error ' + (a.error && a.error.code))), {once: true});
    });
  }
  return {src: a.currentSrc, duration: a.duration, error: a.error && a.error.code};
}"""


def speak(page, text: str, timeout_ms: int = 60_000) -> dict:
    """Open "Text to speech", type ``text``, press Speak: the audio player gets the spoken audio
    (gradio 3.41: an <audio>, whose metadata is read; 4.x: a waveform player showing its length)."""
    page.click(f"{PREFIX}speech_group .label-wrap")
    page.fill(f"{PREFIX}text textarea", text)
    page.click(f"{PREFIX}speak")
    audio, shown = f"{PREFIX}audio audio[src]", f"{PREFIX}audio time#duration"
    page.wait_for_function(HEARD_JS, arg=[audio, shown], timeout=timeout_ms, polling=250)
    if page.locator(audio).count():  # 3.41: an <audio> element
        state = page.locator(audio).first.evaluate(AUDIO_JS)
        assert state["error"] is None, state
        return state
    if page.locator(shown).count():  # 4.x: a waveform player that shows the duration as m:ss
        minutes, seconds = page.inner_text(shown).split(":")
        return {"duration": 60 * int(minutes) + int(seconds), "waveform": True}
    raise AssertionError(f"Speak ended in an error: {page.locator(SHOWN_ERRORS).all_inner_texts()}")


def drop_face_picture(page, picture: Path) -> None:
    """Give the face as a picture (what a drop, a paste, the webcam or a Send button does): the face
    file input then shows the saved PNG."""
    page.set_input_files(f"{PREFIX}face_image input[type=file]", str(picture))
    page.locator(f"{PREFIX}face").filter(has_text=re.compile(r"face_[0-9a-f]+[\s\S]*png")).first.wait_for(timeout=30_000)


# -- the standalone app with the real pipeline ------------------------------------------------------
@contextlib.contextmanager
def running_app(tmp: Path, checkpoint: Path):
    models = tmp / "models"
    models.mkdir()
    os.symlink(checkpoint, models / "wav2lip_gan.pth")  # the default name, found without download
    port = free_port()
    cmd = [
        sys.executable, "-m", "wav2lip_uhq", "app", "--port", str(port),
        "--models-dir", str(models), "--results-dir", str(tmp / "results"),
        "--cache-dir", str(tmp / "cache"), "--device", "cpu",
    ]  # fmt: skip
    with serve(cmd, port, tmp / "app.log", server_env(tmp), cwd=tmp) as url:
        yield url


@pytest.mark.slow
def test_app_in_browser_runs_and_plays(browser, tmp_path, w2l_checkpoint, astronaut_png, speech_short):
    import av

    with running_app(tmp_path, w2l_checkpoint) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        open_app(page, url)
        expect_error_status(page, "Add a face video or image")  # errors show in the status
        page.reload()
        open_app(page, url)

        upload(page, "face", astronaut_png)
        upload(page, "audio", speech_short)
        check_mode_visibility(page)  # ends on "fast"
        check_radio(page, "detector", "dlib", accordion="faces_group")
        state = run_and_play(page, timeout_ms=150_000)

        status = status_text(page)
        assert status.startswith("done: ") and "frames" in status, status
        assert error_toasts(page) == []
        assert page_errors == []
        results = sorted((tmp_path / "results").glob("*.mp4"))
        assert len(results) == 1 and results[0].name in state["src"], (results, state["src"])
        with av.open(str(results[0])) as container:  # what makes it playable in every browser
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_context.format.name == "yuv420p"
            assert container.streams.audio and (stream.width, stream.height) == (state["width"], state["height"])
        assert Path(f"{results[0]}.json").is_file()  # the settings saved beside it
        # the recent-results gallery shows the new result's first frame, loaded by the browser
        page.wait_for_function(
            f"() => [...document.querySelectorAll('{PREFIX}gallery img')].some(i => i.naturalWidth > 0)",
            timeout=30_000,
        )
        # the extension's script is loaded by the app too: the Run button carries its shortcut
        assert page.get_attribute(f"{PREFIX}run", "aria-keyshortcuts"), "javascript/wav2lip_uhq.js not loaded"
        page.close()


# -- README screenshots: python tests/test_app_browser.py --screenshots docs/screenshots ------------
def take_screenshots(out: Path) -> None:
    """app.png (inputs, a result) and uhq-settings.png. Offline, so the generator has rule-filled
    weights: the result's lower face shows what they produce, not real lip sync."""
    import tempfile

    import cv2
    import skimage.data
    import soundfile as sf
    import torch

    from wav2lip_uhq.models import Wav2Lip
    from wav2lip_uhq.models.fill import fill_rule_state_dict

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="w2l_shots_") as tmp_name, chromium_browser() as browser:
        tmp = Path(tmp_name)
        ckpt = tmp / "wav2lip_gan.pth"
        sd = fill_rule_state_dict(Wav2Lip(96))
        torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, ckpt)
        face = tmp / "astronaut.png"
        cv2.imwrite(str(face), skimage.data.astronaut()[:, :, ::-1])
        reference = Path(os.environ.get("WAV2LIP_UHQ_REFERENCE") or REPO.parent / "shared" / "reference")
        wav, sr = sf.read(reference / "speech_16k.wav", dtype="float32")
        audio = tmp / "speech.wav"
        sf.write(audio, wav[: int(2.0 * sr)], sr)
        (tmp / "run").mkdir()
        with running_app(tmp / "run", ckpt) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_app(page, url)
            upload(page, "face", face)
            upload(page, "audio", audio)
            choose(page, "mode", "uhq")
            page.locator(f"{PREFIX}refine_group").wait_for(state="visible")
            page.screenshot(path=str(out / "uhq-settings.png"), full_page=True)
            choose(page, "mode", "improved")  # the default: landmark mask + colour match
            check_radio(page, "detector", "dlib", accordion="faces_group")
            run_and_play(page, timeout_ms=300_000)
            page.evaluate("document.querySelector('#wav2lip_uhq_result video').currentTime = 0.8")
            page.wait_for_timeout(500)
            page.screenshot(path=str(out / "app.png"), full_page=True)


def take_speech_screenshot(out: Path) -> None:
    """speech.png: the inputs column after Speak, with the face given as a picture (offline voice)."""
    import tempfile

    import cv2
    import skimage.data

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="w2l_shots_") as tmp_name, chromium_browser() as browser:
        tmp = Path(tmp_name)
        face = tmp / "astronaut.png"
        cv2.imwrite(str(face), skimage.data.astronaut()[:, :, ::-1])
        (tmp / "models").mkdir()
        port = free_port()
        cmd = [sys.executable, "-m", "wav2lip_uhq", "app", "--port", str(port), "--models-dir", str(tmp / "models"),
               "--results-dir", str(tmp / "results"), "--cache-dir", str(tmp / "cache"), "--device", "cpu"]
        with serve(cmd, port, tmp / "app.log", server_env(tmp), cwd=tmp) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            open_app(page, url)
            drop_face_picture(page, face)
            speak(page, "Hello! I was a picture a minute ago. Now I can talk.")
            page.screenshot(path=str(out / "speech.png"), full_page=True,
                            clip={"x": 0, "y": 0, "width": 720, "height": 1450})


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--screenshots", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--only-speech", action="store_true", help="only speech.png (text to speech)")
    folder = parser.parse_args().screenshots
    if not parser.parse_args().only_speech:
        take_screenshots(folder)
    take_speech_screenshot(folder)
