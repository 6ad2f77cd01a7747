"""The HTTP API (``/wav2lip-uhq/v1``): a real job end to end, and 4xx (never 500) for bad requests."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from api_helpers import api_client  # noqa: E402

from wav2lip_uhq.api import API_PREFIX  # noqa: E402

FAST = {"mode": "fast", "box": "80 200 170 280", "checkpoint": "test_w2l.pth", "batch_size": 4}


@pytest.fixture
def api(tmp_path, w2l_checkpoint, astronaut_png, speech_short):
    return api_client(tmp_path, w2l_checkpoint, astronaut_png, speech_short)


def b64(path: Path) -> dict:
    return {"base64": base64.b64encode(Path(path).read_bytes()).decode(), "name": Path(path).name}


def test_run_with_uploaded_media_waits_for_the_video(api, astronaut_png, speech_short):
    r = api.post(API_PREFIX + "/run", json={"face": b64(astronaut_png), "audio": b64(speech_short),
                                           "settings": FAST, "output_name": "hello", "wait": True})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["state"] == "done", job.get("error")
    out = Path(job["output"])
    assert out == api.policy.results_dir / "hello.mp4" and out.is_file()
    assert job["frames"] >= 30 and Path(job["settings"]).is_file()
    video = api.get(f"{API_PREFIX}/jobs/{job['id']}/video")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content == out.read_bytes()
    assert not any(api.policy.uploads_dir.iterdir())  # the uploaded copies are gone
    # the same name again is refused rather than overwritten
    again = api.post(API_PREFIX + "/run", json={"face": "face.png", "audio": "speech.wav", "settings": FAST,
                                               "output_name": "hello.mp4"})
    assert again.status_code == 409 and "hello.mp4" in again.json()["detail"]


def test_run_by_server_path_is_queued_and_polled(api):
    r = api.post(API_PREFIX + "/run", json={"face": "face.png", "audio": str(api.media / "speech.wav"),
                                           "settings": FAST})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.json()["state"] in ("queued", "running")
    deadline = time.time() + 120
    while time.time() < deadline:
        job = api.get(f"{API_PREFIX}/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert job["state"] == "done", job.get("error")
    assert Path(job["output"]).parent == api.policy.results_dir
    assert (api.media / "face.png").is_file()  # inputs are never touched
    status = api.get(API_PREFIX + "/status").json()
    assert status["queued"] == 0 and status["running"] == 0


def test_info_routes(api):
    assert api.get(API_PREFIX + "/version").json()["api"] == 1
    schema = api.get(API_PREFIX + "/schema").json()
    settings = schema["properties"]["settings"]["properties"]
    assert "mode" in settings and "out" not in settings and "refine_size" in settings
    assert api.get(API_PREFIX + "/jobs/nope").status_code == 404
    assert api.post(API_PREFIX + "/jobs/nope/cancel").status_code == 404
    assert api.get(API_PREFIX + "/jobs/nope/video").status_code == 404


def _bad_requests(tmp: Path, media: Path):
    outside = tmp / "secret.png"
    outside.write_bytes(b"not yours")
    link = media / "link.png"
    if not link.exists():
        os.symlink(outside, link)
    ok_face, ok_audio = "face.png", "speech.wav"
    return [
        ("list body", [1, 2], 400, "JSON object"),
        ("unknown field", {"face": ok_face, "audio": ok_audio, "frobnicate": 1}, 400, "frobnicate"),
        ("no face", {"audio": ok_audio}, 400, "face is required"),
        ("absolute outside", {"face": str(outside), "audio": ok_audio}, 403, "outside"),
        ("traversal", {"face": "../secret.png", "audio": ok_audio}, 403, "outside"),
        ("symlink out", {"face": "link.png", "audio": ok_audio}, 403, "outside"),
        ("system file", {"face": "/etc/passwd", "audio": ok_audio}, 403, "outside"),
        ("missing", {"face": "nope.png", "audio": ok_audio}, 404, "not found"),
        ("wrong type", {"face": ok_audio, "audio": ok_audio}, 415, "not a supported type"),
        ("not base64", {"face": {"base64": "%%%", "name": "a.png"}, "audio": ok_audio}, 400, "base64"),
        ("folder in name", {"face": {"base64": "AAAA", "name": "../a.png"}, "audio": ok_audio}, 400, "plain file"),
        ("hidden name", {"face": {"base64": "AAAA", "name": ".bashrc.png"}, "audio": ok_audio}, 400, "plain file"),
        ("extra upload key", {"face": {"base64": "AAAA", "name": "a.png", "path": "/x"}, "audio": ok_audio}, 400,
         "unknown field"),
        ("too big", {"face": {"base64": "A" * 8_000_000, "name": "a.png"}, "audio": ok_audio}, 413, "limit"),
        ("host setting", {"face": ok_face, "audio": ok_audio, "settings": {"out": "/tmp/x.mp4"}}, 403, "server"),
        ("models dir", {"face": ok_face, "audio": ok_audio, "settings": {"models_dir": "/"}}, 403, "server"),
        ("unknown setting", {"face": ok_face, "audio": ok_audio, "settings": {"speed": 2}}, 400, "speed"),
        ("bad mode", {"face": ok_face, "audio": ok_audio, "settings": {"mode": "ultra"}}, 422, "mode"),
        ("bad number", {"face": ok_face, "audio": ok_audio, "settings": {"pad_top": "x"}}, 422, "not a number"),
        ("checkpoint path", {"face": ok_face, "audio": ok_audio, "settings": {"checkpoint": "../../x.pth"}}, 400,
         "plain file"),
        ("restorer path", {"face": ok_face, "audio": ok_audio, "settings": {"restorer": "/etc/gfpgan.pth"}}, 400,
         "plain file"),
        ("output folder", {"face": ok_face, "audio": ok_audio, "output_name": "../../evil"}, 400, "plain file"),
        ("settings type", {"face": ok_face, "audio": ok_audio, "settings": [1]}, 400, "settings"),
    ]


def test_bad_requests_get_clear_4xx(api, tmp_path):
    for name, body, status, words in _bad_requests(tmp_path, api.media):
        r = api.post(API_PREFIX + "/run", json=body)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert words in r.json()["detail"], (name, r.json())
    r = api.post(API_PREFIX + "/run", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    assert not api.policy.uploads_dir.exists() or not any(api.policy.uploads_dir.iterdir())
    assert not api.policy.results_dir.exists() or not any(api.policy.results_dir.iterdir())
    assert api.get(API_PREFIX + "/status").json()["queued"] == 0


def test_cancel_a_queued_job(api):
    runner = api.jobs.runner
    runner._lock.acquire()  # a UI job holds the runner: API jobs wait in the queue
    try:
        r = api.post(API_PREFIX + "/run", json={"face": "face.png", "audio": "speech.wav", "settings": FAST})
        job_id = r.json()["id"]
        assert api.post(f"{API_PREFIX}/jobs/{job_id}/cancel").status_code == 200
    finally:
        runner._lock.release()
    api.jobs.get(job_id).finished.wait(60)
    job = api.get(f"{API_PREFIX}/jobs/{job_id}").json()
    assert job["state"] == "cancelled", job
    assert api.get(f"{API_PREFIX}/jobs/{job_id}/video").status_code == 409
    assert not api.policy.results_dir.exists() or not list(api.policy.results_dir.glob("*.mp4"))
