"""One HTTP API test client for the API tests: a models folder with the test generator, one media
folder requests may read by path, the routes on a fresh FastAPI app."""

from __future__ import annotations

import shutil
from pathlib import Path

ROUTE_KEYS = ("jobs_enabled", "credentials")


def api_client(tmp_path: Path, checkpoint: Path, face: Path, speech: Path, **kw):
    """A TestClient with ``.jobs``, ``.policy`` and ``.media``; ``kw`` sets ``ApiPolicy`` fields
    and the routes' ``jobs_enabled`` / ``credentials``."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from wav2lip_uhq.api import ApiPolicy, register_routes
    from wav2lip_uhq.ui_runner import UIRunner

    models, media = tmp_path / "models", tmp_path / "media"
    models.mkdir(exist_ok=True)
    media.mkdir(exist_ok=True)
    shutil.copy(checkpoint, models / "test_w2l.pth")
    shutil.copy(face, media / "face.png")
    shutil.copy(speech, media / "speech.wav")
    route_kw = {k: kw.pop(k) for k in ROUTE_KEYS if k in kw}
    policy = ApiPolicy(**{"results_dir": tmp_path / "results", "uploads_dir": tmp_path / "uploads",
                          "allowed_dirs": (media,), "models_dir": models, "max_upload_bytes": 5_000_000, **kw})
    runner = UIRunner(results_dir=policy.results_dir, models_dir=models, cache_dir=tmp_path / "cache", device="cpu")
    app = FastAPI()
    client = TestClient(app)
    client.jobs = register_routes(app, runner, policy, **route_kw)
    client.policy, client.media = policy, media
    return client
