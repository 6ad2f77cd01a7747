"""Who can reach the API and how much it accepts: the enable switch, HTTP Basic credentials, body
limits, a bounded queue, output names reserved on acceptance, media probed before queuing."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from api_helpers import api_client  # noqa: E402

from wav2lip_uhq.api import API_PREFIX, authorized, parse_credentials  # noqa: E402

FAST = {"mode": "fast", "box": "80 200 170 280", "checkpoint": "test_w2l.pth", "batch_size": 4}
JOB = {"face": "face.png", "audio": "speech.wav", "settings": FAST}


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def make_api(tmp_path, w2l_checkpoint, astronaut_png, speech_short):
    def make(**kw):
        client = api_client(tmp_path, w2l_checkpoint, astronaut_png, speech_short, **kw)
        (client.media / "junk.png").write_bytes(b"this is not a picture")
        return client

    return make


def test_job_routes_exist_only_when_enabled(make_api):
    api = make_api(jobs_enabled=False)
    assert api.get(API_PREFIX + "/version").json() == {"version": api.get(API_PREFIX + "/version").json()["version"],
                                                        "api": 1, "jobs": False}
    for method, path in (("post", "/run"), ("get", "/status"), ("get", "/jobs/x"), ("post", "/jobs/x/cancel")):
        assert getattr(api, method)(API_PREFIX + path).status_code in (404, 405), path


def test_credentials_are_required_when_the_host_has_them(make_api):
    api = make_api(credentials={"alice": "s3cret"})
    assert api.get(API_PREFIX + "/version").status_code == 200  # read-only, open
    r = api.post(API_PREFIX + "/run", json=JOB)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert api.post(API_PREFIX + "/run", json=JOB, headers=basic("alice", "wrong")).status_code == 401
    assert api.get(API_PREFIX + "/status", headers=basic("bob", "s3cret")).status_code == 401
    assert api.get(API_PREFIX + "/status", headers=basic("alice", "s3cret")).status_code == 200


def test_credentials_parse_like_the_webui():
    creds = parse_credentials("alice:s3cret, bob:pa:ss")
    assert creds == {"alice": "s3cret", "bob": "pa:ss"}
    assert authorized(basic("bob", "pa:ss")["Authorization"], creds)
    assert not authorized("Basic !!!", creds) and not authorized(None, creds) and authorized(None, {})


def test_oversized_body_is_refused_by_its_length(make_api):
    api = make_api(max_upload_bytes=1000)
    big = {"face": {"base64": "A" * 200_000, "name": "a.png"}, "audio": "speech.wav"}
    r = api.post(API_PREFIX + "/run", json=big)
    assert r.status_code == 413 and "larger than the limit" in r.json()["detail"]


def test_a_full_queue_answers_429_and_a_reserved_name_409(make_api):
    api = make_api(max_queued=1)
    runner = api.jobs.runner
    runner._lock.acquire()  # a UI job holds the runner: API jobs wait in the queue
    try:
        running = api.post(API_PREFIX + "/run", json=JOB)  # taken by the worker, waiting for the runner
        assert running.status_code == 202 and running.headers["x-job-id"] == running.json()["id"]
        wait_for(lambda: api.jobs.get(running.json()["id"]).state == "running")
        first = api.post(API_PREFIX + "/run", json={**JOB, "output_name": "same"})
        assert first.status_code == 202 and first.json()["state"] == "queued"
        full = api.post(API_PREFIX + "/run", json=JOB)
        assert full.status_code == 429
        api.jobs.max_queued = 5
        twin = api.post(API_PREFIX + "/run", json={**JOB, "output_name": "same.mp4"})
        assert twin.status_code == 409 and "same.mp4" in twin.json()["detail"]
        cancel = api.post(f"{API_PREFIX}/jobs/{first.json()['id']}/cancel")
        assert cancel.json()["state"] == "cancelled"  # at once, though another job holds the runner
        again = api.post(API_PREFIX + "/run", json={**JOB, "output_name": "same.mp4"})
        assert again.status_code == 202  # the cancelled job's name is free again
    finally:
        runner._lock.release()
    api.jobs.get(again.json()["id"]).finished.wait(120)
    assert (api.policy.results_dir / "same.mp4").is_file()


def test_waiting_clients_are_capped_and_get_the_job_id(make_api):
    api = make_api(max_waiting_clients=0)
    r = api.post(API_PREFIX + "/run", json={**JOB, "wait": True})
    assert r.status_code == 202 and r.headers["location"].endswith(r.json()["id"])
    api.jobs.get(r.json()["id"]).finished.wait(120)


def test_media_is_probed_before_the_job_is_queued(make_api):
    api = make_api()
    r = api.post(API_PREFIX + "/run", json={**JOB, "face": "junk.png"})
    assert r.status_code == 415 and "junk.png" in r.json()["detail"]
    assert api.get(API_PREFIX + "/status").json()["queued"] == 0


def test_stale_uploads_are_cleaned_at_start(tmp_path, make_api):
    stale = tmp_path / "uploads" / "0003-0123456789ab"
    stale.mkdir(parents=True)
    (stale / "face_x.png").write_bytes(b"x")
    keep = tmp_path / "uploads" / "not-ours"
    keep.mkdir()
    make_api()
    assert not stale.exists() and keep.is_dir()


@pytest.fixture
def webui(monkeypatch, tmp_path):
    from fake_webui import install

    from wav2lip_uhq import webui as glue

    monkeypatch.setattr(glue, "_host", None)
    fake = install(monkeypatch, data_path=tmp_path / "webui")
    fake.load_extension(Path(__file__).resolve().parents[1], name="wav2lip-uhq")
    return fake


def _started_app(fake, demo):
    app = FastAPI()
    for c in fake.script_callbacks.callback_map["callbacks_app_started"]:
        c.callback(demo, app)
    return TestClient(app)


def test_webui_without_api_flag_has_no_job_routes(webui):
    client = _started_app(webui, demo=object())  # a normal launch: the UI, no --api
    assert client.get(API_PREFIX + "/version").json()["jobs"] is False
    assert client.post(API_PREFIX + "/run", json=JOB).status_code in (404, 405)
    webui.cmd_opts.api = True
    webui.cmd_opts.api_auth = "alice:s3cret"
    client = _started_app(webui, demo=object())
    assert client.post(API_PREFIX + "/run", json=JOB).status_code == 401
    assert client.get(API_PREFIX + "/status", headers=basic("alice", "s3cret")).status_code == 200


def test_webui_api_jobs_follow_the_download_setting(webui):
    from wav2lip_uhq import webui as glue

    webui.opts.data["wav2lip_uhq_allow_download"] = False
    assert glue.host().api_policy().allow_download is False
    webui.opts.data["wav2lip_uhq_allow_download"] = True
    assert glue.host().api_policy().allow_download is True
