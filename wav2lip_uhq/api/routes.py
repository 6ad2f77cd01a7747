"""The FastAPI routes under ``/wav2lip-uhq/v1``, and who may reach them.

``version`` is always open. The job routes (run, jobs, cancel, video, status, schema) exist only
where the host enables them (``jobs_enabled``: the WebUI's ``--api``/``--nowebui`` or our opt-in
setting) and, when the host has credentials (the WebUI's ``--api-auth``), answer 401 without
the same HTTP Basic user and password (compared in constant time).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import mimetypes
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..ui_runner import UIRunner
from .jobs import JobQueue, NameTaken, QueueFull
from .requests import (
    API_PREFIX,
    ApiError,
    ApiPolicy,
    _inside,
    clean_stale_uploads,
    parse_request,
    probe_media,
    schema,
)


def parse_credentials(api_auth: str | None) -> dict[str, str]:
    """``user:password[,user2:password2]`` (A1111's ``--api-auth``) -> {user: password}."""
    out: dict[str, str] = {}
    for item in (api_auth or "").split(","):
        user, sep, password = item.strip().partition(":")
        if sep and user:
            out[user] = password
    return out


def authorized(header: str | None, credentials: Mapping[str, str]) -> bool:
    """True when ``header`` is HTTP Basic with a known user and its password (constant time)."""
    if not credentials:
        return True
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic" or not token:
        return False
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    ok = False
    for known, secret in credentials.items():  # every entry compared: no early exit on the user
        ok |= secrets.compare_digest(user.encode(), known.encode()) & secrets.compare_digest(
            password.encode(), secret.encode())
    return bool(sep) and ok


async def read_body(request, limit: int) -> bytes:
    """The request body, refused (413) by its Content-Length or as soon as it passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise ApiError(413, f"the request is larger than the limit of {limit} bytes")
        except ValueError:
            raise ApiError(400, "Content-Length is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def register_routes(app, runner: UIRunner, policy: ApiPolicy, *, prefix: str = API_PREFIX,
                    need_sd_checkpoint: bool = True, jobs: JobQueue | None = None, jobs_enabled: bool = True,
                    credentials: Mapping[str, str] | None = None) -> JobQueue:
    """Add the API routes to a FastAPI ``app``; returns the job queue behind them."""
    from fastapi import Request
    from fastapi.responses import FileResponse, JSONResponse

    jobs = jobs or JobQueue(runner, policy.keep_jobs, policy.max_queued)
    creds = dict(credentials or {})
    waiting = {"n": 0}

    def error(status: int, message: str) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="wav2lip-uhq"'} if status == 401 else None
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.get(prefix + "/version")
    def version():
        return {"version": __version__, "api": 1, "jobs": jobs_enabled}

    if not jobs_enabled:
        return jobs
    clean_stale_uploads(policy)

    def route(method: str, path: str, handler, **params) -> None:
        """Register ``handler`` (sync or async, ``ApiError`` -> its 4xx); it answers 401 unless the
        request carries the host's credentials."""

        async def endpoint(request, **kw):
            if not authorized(request.headers.get("authorization"), creds):
                return error(401, "this server needs its API credentials (HTTP Basic)")
            try:
                result = handler(request, **kw)
                return (await result) if asyncio.iscoroutine(result) else result
            except ApiError as exc:
                return error(exc.status, exc.message)

        # real classes for FastAPI (``from __future__ import annotations`` leaves strings)
        endpoint.__annotations__ = {"request": Request, **params}
        endpoint.__signature__ = _signature(Request, params)
        getattr(app, method)(prefix + path)(endpoint)

    async def run(request):
        raw = await read_body(request, policy.max_request_bytes)
        try:
            payload = json.loads(raw)
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON") from None
        job_id = jobs.new_id()
        loop = asyncio.get_running_loop()

        def accept():  # base64 decoding, file checks and probing off the event loop
            config = parse_request(payload, policy, runner, job_id, need_sd_checkpoint)
            upload_dir = policy.uploads_dir / job_id
            try:
                probe_media(config)
                return jobs.submit(job_id, config, upload_dir if upload_dir.exists() else None)
            except (ApiError, QueueFull, NameTaken):
                shutil.rmtree(upload_dir, ignore_errors=True)
                raise

        try:
            item = await loop.run_in_executor(None, accept)
        except QueueFull as exc:
            raise ApiError(429, str(exc)) from None
        except NameTaken as exc:
            raise ApiError(409, str(exc)) from None
        headers = {"Location": f"{prefix}/jobs/{item.id}", "X-Job-Id": item.id}
        if payload.get("wait") is True and waiting["n"] < policy.max_waiting_clients:
            waiting["n"] += 1
            try:  # polls the job's event: no thread is held while the client waits
                deadline = time.monotonic() + policy.wait_timeout_s
                while not item.finished.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
            finally:
                waiting["n"] -= 1
            if item.finished.is_set():
                return JSONResponse(item.to_json(), status_code=200, headers=headers)
        return JSONResponse(item.to_json(), status_code=202, headers=headers)

    def job_or_404(job_id: str):
        item = jobs.get(job_id)
        if item is None:
            raise ApiError(404, f"no job {job_id}")
        return item

    def job_video(request, job_id: str):
        item = job_or_404(job_id)
        if item.state != "done" or item.job is None or item.job.result is None:
            raise ApiError(409, f"job {job_id} has no result yet (state: {item.state})")
        path = Path(os.path.realpath(item.job.result.output))
        if not _inside(path, [Path(os.path.realpath(policy.results_dir))]) or not path.is_file():
            raise ApiError(410, f"the result of job {job_id} is no longer available")
        return FileResponse(str(path), media_type="video/mp4", filename=path.name)

    route("get", "/status", lambda request: jobs.status())
    route("get", "/schema", lambda request: schema())
    route("post", "/run", run)
    route("get", "/jobs/{job_id}", lambda request, job_id: job_or_404(job_id).to_json(), job_id=str)
    def job_cancel(request, job_id: str):
        item = jobs.cancel(job_id)
        if item is None:
            raise ApiError(404, f"no job {job_id}")
        return item.to_json()

    route("post", "/jobs/{job_id}/cancel", job_cancel, job_id=str)
    route("get", "/jobs/{job_id}/video", job_video, job_id=str)

    def job_file(request, job_id: str, name: str):
        """One extra output of a finished job, by the name its JSON lists (or a PNG of a sequence)."""
        item = job_or_404(job_id)
        if item.state != "done" or item.job is None or item.job.result is None:
            raise ApiError(409, f"job {job_id} has no result yet (state: {item.state})")
        path = extra_file(item.job.result, name)
        if not _inside(path, [Path(os.path.realpath(policy.results_dir))]) or not path.is_file():
            raise ApiError(410, f"{name}: no longer available")
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(str(path), media_type=media, filename=path.name)

    route("get", "/jobs/{job_id}/files/{name:path}", job_file, job_id=str, name=str)
    from .batch import register_batch_routes  # POST /batch, GET /batches/{id}, cancel: the same guard

    jobs.batches = register_batch_routes(route, runner, policy, jobs.new_id, read_body, need_sd_checkpoint, prefix)
    return jobs


def extra_file(result, name: str) -> Path:
    """The extra output ``name`` of ``result`` (``folder/000000.png`` inside a PNG sequence); 404
    for any other name, so a client reaches only the files its job wrote."""
    folder, sep, frame = name.partition("/")
    for path in getattr(result, "extra_outputs", {}).values():
        path = Path(path)
        if path.name != folder:
            continue
        if not sep and not path.is_dir():
            return Path(os.path.realpath(path))
        if sep and path.is_dir() and re.fullmatch(r"\d{6}\.png", frame):
            return Path(os.path.realpath(path / frame))
    raise ApiError(404, f"{name}: not an extra output of this job")


def _signature(request_cls, params: Mapping[str, Any]):
    import inspect

    kinds = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=request_cls)]
    kinds += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=t) for n, t in params.items()]
    return inspect.Signature(kinds)
