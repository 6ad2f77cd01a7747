"""The WebUI extension as the WebUI loads it (preload.py, scripts/ entry, callbacks), against the
fake of WebUI 1.10.1's modules in ``tests/fake_webui``: settings, the tab, the API routes (also
under ``--nowebui``), jobs under the queue lock with ``shared.state`` progress and interrupt, and
``uhq`` refined by the WebUI's own img2img."""

from __future__ import annotations

import base64
import contextlib
import shutil
import threading
from pathlib import Path

import pytest
from fake_webui import install

REPO = Path(__file__).resolve().parents[1]
FAST = {"mode": "fast", "box": "80 200 170 280", "checkpoint": "test_w2l.pth", "batch_size": 4}


@pytest.fixture
def webui(monkeypatch, tmp_path):
    from wav2lip_uhq import webui as glue

    monkeypatch.setattr(glue, "_host", None)  # one host per WebUI process: a fresh one per test
    fake = install(monkeypatch, data_path=tmp_path / "webui")
    fake.modules_loaded = fake.load_extension(REPO, name="wav2lip-uhq")
    return fake


def callbacks(fake, kind: str) -> list:
    return [c.callback for c in fake.script_callbacks.callback_map[f"callbacks_{kind}"]]


def test_extension_registers_settings_tab_and_api(webui):
    assert webui.cmd_opts.wav2lip_uhq_device == "auto" and webui.cmd_opts.wav2lip_uhq_models_dir is None
    for kind, n in (("ui_settings", 2), ("ui_tabs", 1), ("app_started", 1), ("script_unloaded", 1)):
        assert len(callbacks(webui, kind)) == n, kind
    for cb in callbacks(webui, "ui_settings"):
        cb()
    ours = {k: v for k, v in webui.opts.data_labels.items() if k.startswith("wav2lip_uhq_")}
    assert set(ours) >= {"wav2lip_uhq_models_dir", "wav2lip_uhq_default_mode", "wav2lip_uhq_default_detector",
                         "wav2lip_uhq_keep_models"}
    assert {v.section for v in ours.values()} == {("wav2lip_uhq", "Wav2Lip UHQ")}
    assert all(k.startswith("wav2lip_uhq_") for k in webui.opts.data_labels if "wav2lip" in k)


def test_tab_uses_the_webui_folders_and_settings(webui):
    pytest.importorskip("gradio")
    import gradio as gr

    for cb in callbacks(webui, "ui_settings"):
        cb()
    webui.opts.data["wav2lip_uhq_default_mode"] = "enhanced"
    webui.opts.data["wav2lip_uhq_default_detector"] = "dlib"
    [(blocks, title, elem_id)] = callbacks(webui, "ui_tabs")[0]()
    assert isinstance(blocks, gr.Blocks) and title == "Wav2Lip UHQ" and elem_id == "wav2lip_uhq"
    comps = blocks.wav2lip_uhq_components
    assert comps["mode"].value == "enhanced" and comps["detector"].value == "dlib"
    assert comps["sd_checkpoint"].visible is False  # uhq uses the WebUI's loaded checkpoint
    from wav2lip_uhq import webui as glue

    paths = glue.host().paths
    assert paths.models_dir == Path(webui.models_path) / "Wav2Lip-UHQ"  # never inside the extension
    assert Path(webui.data_path) in paths.results_dir.parents and REPO not in paths.results_dir.parents


def test_flags_override_the_folders(webui, tmp_path):
    from wav2lip_uhq import webui as glue

    webui.cmd_opts.wav2lip_uhq_models_dir = str(tmp_path / "my-models")
    webui.cmd_opts.wav2lip_uhq_cache_dir = str(tmp_path / "my-cache")
    p = glue.host_paths()
    assert p.models_dir == tmp_path / "my-models" and p.cache_dir == tmp_path / "my-cache"
    assert p.uploads_dir.parent == tmp_path / "my-cache"


@pytest.fixture
def api_client(webui, w2l_checkpoint, monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    models = Path(webui.models_path) / "Wav2Lip-UHQ"
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy(w2l_checkpoint, models / "test_w2l.pth")
    app = FastAPI()
    for cb in callbacks(webui, "app_started"):
        cb(None, app)  # --nowebui: no gradio demo, the API still works
    return TestClient(app)


def when_job_holds_host(runner, hook) -> None:
    """Call ``hook()`` each time a job has entered the runner's host context (lock held)."""
    real_context = runner.job_context

    @contextlib.contextmanager
    def context(job):
        with real_context(job) as cancel:
            hook()
            yield cancel

    runner.job_context = context


def b64(path: Path) -> dict:
    return {"base64": base64.b64encode(Path(path).read_bytes()).decode(), "name": Path(path).name}


def test_api_job_runs_under_the_queue_lock_with_webui_state(webui, api_client, astronaut_png, speech_short):
    from wav2lip_uhq import webui as glue

    seen = []
    # record the lock and the WebUI state while the job's model work runs
    when_job_holds_host(glue.host().runner, lambda: seen.append((webui.lock_held(), webui.state.job)))
    r = api_client.post("/wav2lip-uhq/v1/run", json={"face": b64(astronaut_png), "audio": b64(speech_short),
                                                    "settings": FAST, "wait": True})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["state"] == "done", job.get("error")
    assert seen == [(True, "wav2lip_uhq")]
    assert not webui.lock_held() and webui.state.job == ""  # released and ended
    out = Path(job["output"])
    assert out.is_file() and Path(webui.data_path) in out.parents
    outside = api_client.post("/wav2lip-uhq/v1/run", json={"face": "/etc/passwd", "audio": "x.wav"})
    assert outside.status_code == 403


def test_webui_interrupt_cancels_a_running_job(webui, api_client, astronaut_png, speech_short):
    from wav2lip_uhq import webui as glue

    started = threading.Event()

    def press_interrupt():  # the WebUI's Interrupt button, pressed as the job starts
        started.set()
        webui.state.interrupt()

    when_job_holds_host(glue.host().runner, press_interrupt)
    r = api_client.post("/wav2lip-uhq/v1/run", json={"face": b64(astronaut_png), "audio": b64(speech_short),
                                                    "settings": FAST, "wait": True})
    assert started.is_set() and r.json()["state"] == "cancelled", r.json()
    assert not list(glue.host().paths.results_dir.glob("*.mp4"))


def test_uhq_refines_with_the_webui_model(webui, api_client, astronaut_png, speech_short, monkeypatch):
    """uhq inside the WebUI: no SD checkpoint file needed, the mouth goes through the WebUI's
    img2img (the fake brightens the masked pixels), under the one queue lock (no deadlock)."""
    import cv2

    from wav2lip_uhq.refine.consistency import SyncGuard

    # The fake's flat +40 is no plausible mouth, so the sync guard (tested in test_refine.py) would
    # rightly reject it; here it must let the refinement through to show where it lands.
    checked = []
    monkeypatch.setattr(SyncGuard, "ok_landmarks", lambda self, before, after, boxes: checked.extend(after)
                        or [True] * len(after))

    settings = {**FAST, "mode": "uhq", "detector": "dlib", "steps": 4, "denoise": 0.3}
    r = api_client.post("/wav2lip-uhq/v1/run", json={"face": b64(astronaut_png), "audio": b64(speech_short),
                                                    "settings": settings, "wait": True})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["state"] == "done", job.get("error")
    assert webui.calls, "the WebUI's process_images was never called"
    assert all(c["lock_held"] for c in webui.calls)
    p = webui.calls[0]["p"]
    assert p.steps == 4 and abs(p.denoising_strength - 0.3) < 1e-9 and p.is_api
    plain = api_client.post("/wav2lip-uhq/v1/run", json={
        "face": b64(astronaut_png), "audio": b64(speech_short), "settings": {**settings, "mode": "improved"},
        "wait": True}).json()
    assert plain["state"] == "done", plain.get("error")

    def first_frame(path):
        cap = cv2.VideoCapture(path)
        ok, frame = cap.read()
        cap.release()
        assert ok
        return frame.astype(int)

    refined, unrefined = first_frame(job["output"]), first_frame(plain["output"])
    lift = (refined - unrefined).mean(axis=2)  # the fake img2img brightens the masked crop by 40
    assert abs(lift[:80].mean()) < 1.5  # above the face: identical up to video coding
    assert lift[150:200, 190:260].mean() > 10, lift[150:200, 190:260].mean()  # the mouth was refined
    assert len(checked) == job["frames"]  # every refined frame went through the sync guard


def test_uhq_without_a_loaded_sd_model_fails_clearly(webui, api_client, astronaut_png, speech_short):
    webui.set_sd_model(None)
    settings = {**FAST, "mode": "uhq", "detector": "dlib", "steps": 2}
    r = api_client.post("/wav2lip-uhq/v1/run", json={"face": b64(astronaut_png), "audio": b64(speech_short),
                                                    "settings": settings, "wait": True})
    job = r.json()
    assert job["state"] == "error" and "checkpoint" in job["error"].lower(), job


@pytest.mark.parametrize("who", ["api", "tab"])
def test_our_cancel_interrupts_the_webui_sampler_mid_crop(webui, api_client, astronaut_png, speech_short, who):
    """uhq: a cancel from our API (or our Interrupt button) must stop the WebUI's sampler within a
    step, not after the crop it is on (a slow fake sampler: 0.25 s per step, 5 s per crop)."""
    import time

    from wav2lip_uhq import webui as glue

    sampling, steps_run = threading.Event(), []

    def slow_step(p, step, steps):
        steps_run.append(step)
        sampling.set()
        time.sleep(0.25)

    webui.hooks["sample_step"] = slow_step
    settings = {**FAST, "mode": "uhq", "detector": "dlib", "steps": 40, "denoise": 0.5}
    r = api_client.post("/wav2lip-uhq/v1/run", json={"face": b64(astronaut_png), "audio": b64(speech_short),
                                                    "settings": settings})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert sampling.wait(60), "the sampler never started"
    t0 = time.monotonic()
    if who == "api":
        assert api_client.post(f"/wav2lip-uhq/v1/jobs/{job_id}/cancel").status_code == 200
    else:  # the tab's Interrupt button
        assert glue.host().runner.cancel()
    job = glue.host().runner.job
    assert job.done.wait(30)
    latency = time.monotonic() - t0
    assert job.cancelled, job.error
    assert latency < 2.0, f"{latency:.1f} s to stop"  # the crop alone had 4+ s left
    assert len(steps_run) < 20  # the crop was abandoned
    assert not list(glue.host().paths.results_dir.glob("*.mp4"))
    webui.hooks["sample_step"] = None
    webui.state.begin()  # the next WebUI job starts clean: our interrupt never outlives our job
    assert webui.state.interrupted is False


def test_cancel_after_the_job_never_interrupts_the_webui(webui, api_client, astronaut_png, speech_short):
    from wav2lip_uhq import webui as glue

    r = api_client.post("/wav2lip-uhq/v1/run", json={"face": b64(astronaut_png), "audio": b64(speech_short),
                                                    "settings": FAST, "wait": True})
    assert r.json()["state"] == "done"
    job = glue.host().runner.job
    job.cancel_event.set()  # a late cancel, while the user's own generation runs
    webui.state.begin(job="txt2img")
    for t in threading.enumerate():  # the job's interrupt watcher ends with the job, without firing
        if t.name == "wav2lip-uhq-interrupt":
            t.join(5)
            assert not t.is_alive()
    assert webui.state.interrupted is False


def _count_builds(monkeypatch) -> list:
    from wav2lip_uhq.pipeline.model_bank import ModelBank

    builds, real = [], ModelBank.get

    def get(self, key, build):
        return real(self, key, lambda: (builds.append(key[0]), build())[1])

    monkeypatch.setattr(ModelBank, "get", get)
    return builds


def test_models_stay_loaded_between_jobs_of_the_tab_and_the_api(webui, api_client, astronaut_png, speech_short,
                                                                  monkeypatch):
    from wav2lip_uhq import webui as glue

    builds = _count_builds(monkeypatch)
    settings = {**FAST, "mode": "improved", "detector": "dlib"}
    for _ in range(2):
        r = api_client.post("/wav2lip-uhq/v1/run", json={"face": b64(astronaut_png), "audio": b64(speech_short),
                                                        "settings": settings, "wait": True})
        assert r.json()["state"] == "done", r.json()
    from wav2lip_uhq.ui import config_from_ui

    runner = glue.host().runner  # a job from the tab: the same runner, values as the form gives them
    values = {**runner.base_values(), **settings, "face": str(astronaut_png), "audio": str(speech_short)}
    runner.run(config_from_ui(values, need_sd_checkpoint=False), timeout=120)
    assert sorted(builds) == sorted(set(builds)), builds  # every model built once


def test_models_released_on_the_webuis_unload_and_by_the_setting(webui, api_client, astronaut_png, speech_short,
                                                                   monkeypatch):
    from wav2lip_uhq import webui as glue

    builds = _count_builds(monkeypatch)
    job = {"face": b64(astronaut_png), "audio": b64(speech_short), "settings": FAST, "wait": True}
    assert api_client.post("/wav2lip-uhq/v1/run", json=job).json()["state"] == "done"
    n = len(builds)
    webui.modules.sd_models.unload_model_weights()  # Settings -> Actions -> Unload SD checkpoint
    assert webui.sd_model_unloads == [1]  # the WebUI's own unload still ran
    assert api_client.post("/wav2lip-uhq/v1/run", json=job).json()["state"] == "done"
    assert len(builds) == 2 * n  # loaded again after the unload
    for cb in callbacks(webui, "ui_settings"):
        cb()
    assert webui.opts.wav2lip_uhq_keep_models is True
    webui.opts.wav2lip_uhq_keep_models = False
    assert api_client.post("/wav2lip-uhq/v1/run", json=job).json()["state"] == "done"
    assert glue.host().runner._pipeline is None  # released when the job ended
