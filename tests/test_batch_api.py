"""``POST /wav2lip-uhq/v1/batch``: rows parsed like ``/run`` (same access rules), run through the API's
runner, a failing row reported while the batch goes on, resumed by output name, cancel."""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from api_helpers import api_client  # noqa: E402

from wav2lip_uhq.api import API_PREFIX  # noqa: E402

FAST = {"mode": "fast", "box": "80 200 170 280", "checkpoint": "test_w2l.pth", "batch_size": 8}


@pytest.fixture
def make_api(tmp_path, w2l_checkpoint, astronaut_png, speech_short):
    return lambda **kw: api_client(tmp_path, w2l_checkpoint, astronaut_png, speech_short, **kw)


def finished(api, batch_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = api.get(f"{API_PREFIX}/batches/{batch_id}").json()
        if state["state"] not in ("queued", "running"):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


def test_batch_runs_rows_reports_a_failing_one_and_resumes(make_api, speech_short):
    api = make_api()
    api.policy.results_dir.mkdir()
    (api.policy.results_dir / "taken.mp4").write_bytes(b"someone else's file")
    upload = {"base64": base64.b64encode(Path(speech_short).read_bytes()).decode(), "name": "voice.wav"}
    body = {"settings": FAST, "rows": [
        {"face": "face.png", "audio": "speech.wav", "output_name": "one"},
        {"face": "face.png", "audio": "speech.wav", "output_name": "taken.mp4"},
        {"face": "face.png", "audio": upload, "output_name": "two", "settings": {"crf": 30}},
    ]}
    r = api.post(API_PREFIX + "/batch", json=body)
    assert r.status_code == 202, r.text
    state = finished(api, r.json()["id"])
    assert state["state"] == "done" and (state["done"], state["failed"]) == (2, 1), state
    results = state["results"]
    assert [x["status"] for x in results] == ["done", "failed", "done"]
    assert "taken.mp4" in results[1]["error"] and "--overwrite" in results[1]["error"]
    assert (api.policy.results_dir / "taken.mp4").read_bytes() == b"someone else's file"
    two = api.policy.results_dir / "two.mp4"
    assert json.loads(Path(f"{two}.json").read_text())["encode"]["crf"] == 30
    saved = json.loads((api.policy.results_dir / "batches" / f"{state['id']}.json").read_text())
    assert saved["done"] == 2 and saved["failures"] == state["failures"]
    assert not any(api.policy.uploads_dir.iterdir())  # uploaded copies are gone
    # the same request again: finished rows are skipped (the upload has the same bytes, another path)
    again = finished(api, api.post(API_PREFIX + "/batch", json=body).json()["id"])
    assert [x["status"] for x in again["results"]] == ["skipped", "failed", "skipped"]


def test_batch_rows_are_validated_like_run_before_anything_is_queued(make_api, tmp_path):
    api = make_api()
    outside = tmp_path / "secret.png"
    shutil.copy(api.media / "face.png", outside)
    cases = [
        ({"rows": [{"face": "face.png", "audio": "speech.wav"}, {"face": str(outside), "audio": "speech.wav"}]},
         403, "rows[1]: face"),
        ({"rows": [{"face": "face.png", "audio": "speech.wav", "settings": {"mask_feather": 3}}]}, 422,
         "rows[0]: mask feather must be between 0 and 1"),
        ({"rows": [{"face": "face.png", "audio": "speech.wav", "settings": {"device": "cuda"}}]}, 403, "rows[0]"),
        ({"rows": [{"face": "face.png", "audio": "speech.wav", "output_name": "x"},
                   {"face": "face.png", "audio": "speech.wav", "output_name": "x.mp4"}]}, 409, "rows[1]"),
        ({"rows": []}, 400, "rows must be"),
        ({"rows": [{"face": "face.png", "audio": "speech.wav"}], "wait": True}, 400, "unknown field"),
    ]
    for body, status, text in cases:
        body.setdefault("settings", FAST)
        r = api.post(API_PREFIX + "/batch", json=body)
        assert r.status_code == status and text in r.json()["detail"], (body, r.text)
    assert not api.jobs.batches.batches  # nothing queued
    assert not api.policy.uploads_dir.exists() or not any(api.policy.uploads_dir.iterdir())


def test_batch_routes_follow_the_access_rules_of_run(make_api):
    closed = make_api(jobs_enabled=False)
    assert closed.post(API_PREFIX + "/batch", json={"rows": []}).status_code in (404, 405)
    locked = make_api(credentials={"ann": "pw"})
    body = {"settings": FAST, "rows": [{"face": "face.png", "audio": "speech.wav"}]}
    assert locked.post(API_PREFIX + "/batch", json=body).status_code == 401
    assert locked.get(API_PREFIX + "/batches/0001-abc").status_code == 401
    ok = locked.post(API_PREFIX + "/batch", json=body, auth=("ann", "pw"))
    assert ok.status_code == 202, ok.text
    batch_id = ok.json()["id"]
    assert locked.post(f"{API_PREFIX}/batches/{batch_id}/cancel").status_code == 401
    cancel = locked.post(f"{API_PREFIX}/batches/{batch_id}/cancel", auth=("ann", "pw"))
    assert cancel.status_code == 200
    deadline = time.monotonic() + 60
    while (state := locked.get(f"{API_PREFIX}/batches/{batch_id}", auth=("ann", "pw")).json())["state"] in (
            "queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert state["state"] == "cancelled"
    assert locked.get(API_PREFIX + "/batches/nope", auth=("ann", "pw")).status_code == 404
