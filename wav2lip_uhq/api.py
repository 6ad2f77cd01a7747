"""HTTP API: ``POST /wav2lip-uhq/v1/run`` plus job status, result and cancel routes.

Used by the WebUI extension (``on_app_started``, also under ``--nowebui``) and the standalone app.
A request names its media by server path (only inside the folders the host allows) or carries it
as base64; its ``settings`` use the UI's keys and go through the UI's own validation
(``ui.config_from_ui``), so the API and the tab accept exactly the same options. Jobs run one at a
time, in order, through the same ``UIRunner`` as the UI (inside the WebUI: under its queue lock).

Everything but ``register_routes`` is plain Python; FastAPI is imported only there.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .config import RunConfig
from .files import write_atomic
from .options import json_schema, value_keys
from .ui import FACE_TYPES, UIInputError, config_from_ui
from .ui_runner import Job, UIRunner

log = logging.getLogger(__name__)

API_PREFIX = "/wav2lip-uhq/v1"
AUDIO_TYPES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".mov", ".mkv")
REQUEST_KEYS = ("face", "audio", "settings", "output_name", "wait")
# Settings that name model files: a bare file name inside the models folder (or a known name).
MODEL_FILE_KEYS = ("checkpoint", "restorer", "upscaler", "parser", "sd_checkpoint")


def client_keys() -> list[str]:
    """The settings a client may send: the options declared ``client=True``."""
    return value_keys(client=True)


def host_keys() -> list[str]:
    """Settings only the server chooses (where files go, what it runs on, whether it downloads)."""
    return value_keys(client=False)


class ApiError(Exception):
    """A request the server refuses: ``status`` is the HTTP code (4xx), ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ApiPolicy:
    """What the API may touch. Reads only inside ``allowed_dirs`` (plus its own uploads and
    results), writes only inside ``results_dir`` and ``uploads_dir``."""

    results_dir: Path
    uploads_dir: Path
    allowed_dirs: tuple[Path, ...] = ()
    models_dir: Path | None = None
    allow_download: bool = False  # the server's setting; a client cannot change it
    max_upload_bytes: int = 1 << 30
    keep_jobs: int = 200  # finished jobs remembered for status queries

    def readable_roots(self) -> list[Path]:
        roots = [*self.allowed_dirs, self.uploads_dir, self.results_dir]
        return [Path(os.path.realpath(r)) for r in roots]


def safe_name(name: Any, what: str) -> str:
    """A plain file name: no folders, no leading dot, only letters, digits, ``._-`` and spaces."""
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, f"{what}: a file name is required")
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if base != name.strip() or base in (".", "..") or base.startswith(".") or "\x00" in base:
        raise ApiError(400, f"{what}: {name!r} must be a plain file name, without folders")
    if not re.fullmatch(r"[\w.\- ]{1,120}", base):
        raise ApiError(400, f"{what}: {name!r} has characters that are not allowed in a file name")
    return base


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def resolve_server_path(value: Any, policy: ApiPolicy, what: str, suffixes: tuple[str, ...]) -> Path:
    """A path on the server, accepted only if it resolves (symlinks included) inside an allowed folder."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ApiError(400, f"{what}: expected a server path or {{'base64': ..., 'name': ...}}")
    roots = policy.readable_roots()
    raw = Path(value)
    if not raw.is_absolute():
        if not policy.allowed_dirs:
            raise ApiError(400, f"{what}: a relative path needs an allowed folder on the server")
        raw = Path(policy.allowed_dirs[0]) / raw
    real = Path(os.path.realpath(raw))
    if not _inside(real, roots):
        raise ApiError(403, f"{what}: {value} is outside the folders this server may read")
    if not real.is_file():
        raise ApiError(404, f"{what}: file not found: {value}")
    if real.suffix.lower() not in suffixes:
        raise ApiError(415, f"{what}: {real.name} is not a supported type ({', '.join(suffixes)})")
    return real


def _decode_upload(value: Mapping, policy: ApiPolicy, job_dir: Path, what: str,
                   suffixes: tuple[str, ...]) -> Path:
    unknown = set(value) - {"base64", "name"}
    if unknown:
        raise ApiError(400, f"{what}: unknown field(s) {', '.join(sorted(unknown))}; use 'base64' and 'name'")
    name = safe_name(value.get("name"), f"{what}.name")
    if Path(name).suffix.lower() not in suffixes:
        raise ApiError(415, f"{what}: {name} is not a supported type ({', '.join(suffixes)})")
    data = value.get("base64")
    if not isinstance(data, str) or not data:
        raise ApiError(400, f"{what}.base64: expected a base64 string")
    if data.startswith("data:"):  # a data URL: keep what follows the comma
        data = data.partition(",")[2]
    if len(data) * 3 // 4 > policy.max_upload_bytes:
        raise ApiError(413, f"{what}: larger than the limit of {policy.max_upload_bytes} bytes")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{what}.base64: not valid base64") from None
    if not raw:
        raise ApiError(400, f"{what}: the file is empty")
    job_dir.mkdir(parents=True, exist_ok=True)
    return write_atomic(job_dir / f"{what}_{name}", raw)


def _media(value: Any, policy: ApiPolicy, job_dir: Path, what: str, suffixes: tuple[str, ...]) -> Path:
    if value is None:
        raise ApiError(400, f"{what} is required")
    if isinstance(value, Mapping):
        return _decode_upload(value, policy, job_dir, what, suffixes)
    return resolve_server_path(value, policy, what, suffixes)


def _model_setting(key: str, value: Any) -> Any:
    """Model settings name a file in the models folder (or a released name), never a path."""
    if value is None or value == "":
        return value
    return safe_name(value, f"settings.{key}")


def parse_request(payload: Any, policy: ApiPolicy, runner: UIRunner, job_id: str,
                  need_sd_checkpoint: bool = True) -> RunConfig:
    """The ``RunConfig`` for one ``/run`` request, or ``ApiError`` (4xx) saying what is wrong."""
    if not isinstance(payload, Mapping):
        raise ApiError(400, "the request body must be a JSON object")
    unknown = set(payload) - set(REQUEST_KEYS)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(REQUEST_KEYS)}")
    if "wait" in payload and not isinstance(payload["wait"], bool):
        raise ApiError(400, f"wait: {payload['wait']!r} is not true or false")
    settings = payload.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ApiError(400, "settings must be a JSON object of UI settings")
    if "face" in settings or "audio" in settings:
        raise ApiError(400, "give face and audio at the top level of the request, not in settings")
    bad = sorted(set(settings) & set(host_keys()))
    if bad:
        raise ApiError(403, f"settings {', '.join(bad)} are chosen by the server, not by a request")
    unknown = sorted(set(settings) - set(client_keys()))
    if unknown:
        raise ApiError(400, f"unknown setting(s) {', '.join(unknown)}; see GET {API_PREFIX}/schema")
    from .checkpoints import KNOWN_CHECKPOINTS, models_dir

    values: dict[str, Any] = {**settings, **runner.base_values(), "allow_download": policy.allow_download}
    folder = models_dir(policy.models_dir or runner.models_dir)
    for key in MODEL_FILE_KEYS:
        name = _model_setting(key, settings.get(key))
        if name and not (key == "checkpoint" and name in KNOWN_CHECKPOINTS):
            values[key] = str(folder / name)  # never a file outside the models folder
    job_dir = policy.uploads_dir / job_id
    try:
        values["face"] = _media(payload.get("face"), policy, job_dir, "face", tuple(FACE_TYPES))
        values["audio"] = _media(payload.get("audio"), policy, job_dir, "audio", AUDIO_TYPES)
        if payload.get("output_name") is not None:
            name = safe_name(payload["output_name"], "output_name")
            if not name.lower().endswith(".mp4"):
                name += ".mp4"
            policy.results_dir.mkdir(parents=True, exist_ok=True)
            values["out"] = policy.results_dir / name
            if values["out"].exists():
                raise ApiError(409, f"output_name: {name} already exists in the results folder")
        try:
            return config_from_ui(values, need_sd_checkpoint=need_sd_checkpoint)
        except UIInputError as exc:
            raise ApiError(422, str(exc)) from None
    except ApiError:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise


@dataclass
class ApiJob:
    id: str
    config: RunConfig
    upload_dir: Path | None = None
    state: str = "queued"  # queued, running, done, error, cancelled
    job: Job | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "state": self.state, "created": self.created}
        job = self.job
        if job is not None:
            out.update(stage=job.stage, frames_done=job.frames_done, frames_total=job.frames_total,
                       progress=job.progress_text())
            if job.result is not None:
                r = job.result
                out.update(output=str(r.output), frames=r.frames, fps=r.fps,
                           frames_without_face=r.frames_without_face,
                           settings=str(job.settings_path) if job.settings_path else None)
        if self.error:
            out["error"] = self.error
        return out


class JobQueue:
    """API jobs, run in order by one worker thread through the UI's runner (UI jobs go first
    when they hold the runner; the worker then waits instead of failing)."""

    def __init__(self, runner: UIRunner, keep: int = 200) -> None:
        self.runner = runner
        self.keep = keep
        self.jobs: OrderedDict[str, ApiJob] = OrderedDict()
        self._queue: queue.Queue[ApiJob] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._ids = itertools.count()

    def new_id(self) -> str:
        return f"{next(self._ids):04d}-{uuid.uuid4().hex[:12]}"

    def submit(self, job_id: str, config: RunConfig, upload_dir: Path | None = None) -> ApiJob:
        item = ApiJob(job_id, config, upload_dir)
        with self._lock:
            self.jobs[job_id] = item
            while len(self.jobs) > self.keep:  # forget the oldest finished jobs
                oldest = next((k for k, j in self.jobs.items() if j.finished.is_set()), None)
                if oldest is None:
                    break
                del self.jobs[oldest]
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="wav2lip-uhq-api", daemon=True)
                self._worker.start()
        self._queue.put(item)
        return item

    def get(self, job_id: str) -> ApiJob | None:
        return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> ApiJob | None:
        item = self.jobs.get(job_id)
        if item is None:
            return None
        item.cancel_requested = True
        if item.job is not None:
            item.job.cancel_event.set()
        return item

    def status(self) -> dict[str, Any]:
        states = [j.state for j in self.jobs.values()]
        return {"busy": self.runner.busy, "queued": states.count("queued"),
                "running": states.count("running"), "version": __version__}

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                self._run(item)
            except Exception as exc:  # noqa: BLE001 - a failed job must not stop the worker
                item.state, item.error = "error", f"{type(exc).__name__}: {exc}"
                log.exception("API job %s failed", item.id)
            finally:
                if item.upload_dir is not None:
                    shutil.rmtree(item.upload_dir, ignore_errors=True)
                item.finished.set()

    def _run(self, item: ApiJob) -> None:
        if item.cancel_requested:
            item.state = "cancelled"
            return
        item.state = "running"
        job = self.runner.start(item.config, wait=True)
        item.job = job
        if item.cancel_requested:
            job.cancel_event.set()
        job.done.wait()
        if job.error is None:
            item.state = "done"
        elif job.cancelled:
            item.state = "cancelled"
        else:
            item.state, item.error = "error", str(job.error)


def schema() -> dict[str, Any]:
    """The request format as a JSON Schema (``GET /schema``); ``settings`` are the declared options
    a client may set, with their types, ranges, choices and defaults."""
    media = {
        "anyOf": [
            {"type": "string", "description": "a server path inside a folder the server allows"},
            {"type": "object", "required": ["base64", "name"], "additionalProperties": False,
             "properties": {"base64": {"type": "string"}, "name": {"type": "string"}}},
        ]
    }
    settings = json_schema(client_keys())
    settings.pop("$schema")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "POST /run request",
        "type": "object",
        "required": ["face", "audio"],
        "additionalProperties": False,
        "properties": {
            "face": {**media, "description": f"video or image ({', '.join(FACE_TYPES)})"},
            "audio": {**media, "description": f"speech ({', '.join(AUDIO_TYPES)})"},
            "settings": settings,
            "output_name": {"type": "string", "description": "file name for the result in the results folder"},
            "wait": {"type": "boolean", "default": False, "description": "answer when the job has finished"},
        },
    }


def register_routes(app, runner: UIRunner, policy: ApiPolicy, *, prefix: str = API_PREFIX,
                    need_sd_checkpoint: bool = True, jobs: JobQueue | None = None) -> JobQueue:
    """Add the API routes to a FastAPI ``app``; returns the job queue behind them."""
    import asyncio

    from fastapi import Request
    from fastapi.responses import FileResponse, JSONResponse

    jobs = jobs or JobQueue(runner, policy.keep_jobs)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status)

    @app.get(prefix + "/version")
    def version():
        return {"version": __version__, "api": 1}

    @app.get(prefix + "/status")
    def status():
        return jobs.status()

    @app.get(prefix + "/schema")
    def request_schema():
        return schema()

    async def run(request):
        try:
            payload = await request.json()
        except ValueError:
            return error(400, "the request body is not valid JSON")
        job_id = jobs.new_id()
        loop = asyncio.get_running_loop()
        try:  # base64 decoding and file checks off the event loop
            config = await loop.run_in_executor(
                None, lambda: parse_request(payload, policy, runner, job_id, need_sd_checkpoint))
        except ApiError as exc:
            return error(exc.status, exc.message)
        upload_dir = policy.uploads_dir / job_id
        item = jobs.submit(job_id, config, upload_dir if upload_dir.exists() else None)
        wait = payload.get("wait") is True
        if wait:
            await loop.run_in_executor(None, item.finished.wait)
            return JSONResponse(item.to_json(), status_code=200)
        return JSONResponse(item.to_json(), status_code=202)

    # a real class, not the string that ``from __future__ import annotations`` leaves for FastAPI
    run.__annotations__ = {"request": Request}
    app.post(prefix + "/run")(run)

    @app.get(prefix + "/jobs/{job_id}")
    def job_status(job_id: str):
        item = jobs.get(job_id)
        return item.to_json() if item is not None else error(404, f"no job {job_id}")

    @app.post(prefix + "/jobs/{job_id}/cancel")
    def job_cancel(job_id: str):
        item = jobs.cancel(job_id)
        return item.to_json() if item is not None else error(404, f"no job {job_id}")

    @app.get(prefix + "/jobs/{job_id}/video")
    def job_video(job_id: str):
        item = jobs.get(job_id)
        if item is None:
            return error(404, f"no job {job_id}")
        if item.state != "done" or item.job is None or item.job.result is None:
            return error(409, f"job {job_id} has no result yet (state: {item.state})")
        path = Path(os.path.realpath(item.job.result.output))
        if not _inside(path, [Path(os.path.realpath(policy.results_dir))]) or not path.is_file():
            return error(410, f"the result of job {job_id} is no longer available")
        return FileResponse(str(path), media_type="video/mp4", filename=path.name)

    return jobs


__all__ = [
    "API_PREFIX",
    "ApiError",
    "ApiJob",
    "ApiPolicy",
    "JobQueue",
    "parse_request",
    "register_routes",
    "resolve_server_path",
    "safe_name",
    "schema",
]
