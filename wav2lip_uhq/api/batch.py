"""``POST /wav2lip-uhq/v1/batch``: many rows in one request, run by the batch runner as jobs of
the API's ``UIRunner`` (one at a time, between the other jobs), resumable by output name.

Every row is parsed exactly like a ``/run`` request (``parse_request``: server paths only inside
the allowed folders, or base64 uploads; client settings only) before anything is queued; a bad
row refuses the whole request (4xx naming ``rows[i]``). A row with an ``output_name`` whose file
exists from the same inputs and settings is skipped, so a client can send an interrupted batch
again; one with another file under that name fails (the batch goes on). The routes are
registered by ``routes.register_routes`` through the same guard (enable flag, credentials) as
``/run``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batch import BatchRow
from ..batch.host import RunnerRows, run_rows
from ..ui_runner import UIRunner
from .requests import ApiError, ApiPolicy, parse_request, probe_media, safe_name

log = logging.getLogger(__name__)

MAX_BATCH_ROWS = 256
BATCH_KEYS = ("rows", "settings")
ROW_KEYS = ("face", "audio", "settings", "output_name")


@dataclass
class ApiBatch:
    id: str
    rows: list[BatchRow]
    upload_dirs: list[Path]
    state: str = "queued"  # queued, running, done, cancelled, error
    created: float = field(default_factory=time.time)
    stop: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    summary: Any = None  # BatchSummary once it runs
    rows_run: RunnerRows | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "state": self.state, "created": self.created, "rows": len(self.rows)}
        if self.summary is not None:
            out.update(self.summary.to_json())
            out["rows"] = len(self.rows)
        if self.error:
            out["error"] = self.error
        return out


def _output(name: Any, policy: ApiPolicy, what: str) -> Path:
    base = safe_name(name, what)
    return policy.results_dir / (base if base.lower().endswith(".mp4") else base + ".mp4")


def _row(i: int, item: Any, common: Mapping, policy: ApiPolicy, runner: UIRunner, row_id: str,
         need_sd: bool) -> tuple[BatchRow, Path]:
    if not isinstance(item, Mapping):
        raise ApiError(400, f"rows[{i}]: expected an object with face, audio, settings, output_name")
    unknown = set(item) - set(ROW_KEYS)
    if unknown:
        raise ApiError(400, f"rows[{i}]: unknown field(s) {', '.join(sorted(unknown))}")
    settings = item.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ApiError(400, f"rows[{i}].settings must be a JSON object")
    request = {"face": item.get("face"), "audio": item.get("audio"), "settings": {**common, **settings}}
    try:
        config = parse_request(request, policy, runner, row_id, need_sd)
        probe_media(config)
        if item.get("output_name") is not None:
            policy.results_dir.mkdir(parents=True, exist_ok=True)
            config.out = _output(item["output_name"], policy, "output_name")
    except ApiError as exc:
        shutil.rmtree(policy.uploads_dir / row_id, ignore_errors=True)
        raise ApiError(exc.status, f"rows[{i}]: {exc.message}") from None
    return BatchRow(i, f"rows[{i}]", config), policy.uploads_dir / row_id


def parse_batch(payload: Any, policy: ApiPolicy, runner: UIRunner, new_id, need_sd: bool = True):
    """(rows, upload folders) of a ``/batch`` request, or ``ApiError``; nothing stays on error."""
    if not isinstance(payload, Mapping):
        raise ApiError(400, "the request body must be a JSON object")
    unknown = set(payload) - set(BATCH_KEYS)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(BATCH_KEYS)}")
    items, common = payload.get("rows"), payload.get("settings") or {}
    if not isinstance(items, list) or not items:
        raise ApiError(400, "rows must be a non-empty list of {face, audio, settings, output_name}")
    if len(items) > MAX_BATCH_ROWS:
        raise ApiError(413, f"{len(items)} rows; a batch has at most {MAX_BATCH_ROWS}")
    if not isinstance(common, Mapping):
        raise ApiError(400, "settings must be a JSON object of UI settings")
    rows, dirs, seen = [], [], {}
    try:
        for i, item in enumerate(items):
            row, folder = _row(i, item, common, policy, runner, new_id(), need_sd)
            rows.append(row)
            dirs.append(folder)
            if row.config.out is not None:
                if row.config.out in seen:
                    raise ApiError(409, f"rows[{i}]: output_name {row.config.out.name} is also rows[{seen[row.config.out]}]'s")
                seen[row.config.out] = i
    except ApiError:
        for folder in dirs:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return rows, dirs


class BatchQueue:
    """API batches, run in order by one worker thread (each row a job of the runner)."""

    def __init__(self, runner: UIRunner, policy: ApiPolicy) -> None:
        self.runner, self.policy = runner, policy
        self.batches: OrderedDict[str, ApiBatch] = OrderedDict()
        self._lock = threading.Lock()
        self._todo: list[ApiBatch] = []
        self._wake = threading.Condition(self._lock)
        self._worker: threading.Thread | None = None
        self._ids = itertools.count()

    def submit(self, batch: ApiBatch) -> ApiBatch:
        with self._lock:
            waiting = sum(1 for b in self.batches.values() if b.state == "queued")
            if waiting >= self.policy.max_queued:
                raise ApiError(429, f"{waiting} batches are already waiting; try again later")
            self.batches[batch.id] = batch
            while len(self.batches) > self.policy.keep_jobs:
                oldest = next((k for k, b in self.batches.items() if b.finished.is_set()), None)
                if oldest is None:
                    break
                del self.batches[oldest]
            self._todo.append(batch)
            self._wake.notify()
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="wav2lip-uhq-api-batch", daemon=True)
                self._worker.start()
        return batch

    def get(self, batch_id: str) -> ApiBatch | None:
        with self._lock:
            return self.batches.get(batch_id)

    def cancel(self, batch_id: str) -> ApiBatch | None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return None
            batch.stop.set()
            if batch.state == "queued":
                batch.state = "cancelled"
                self._todo.remove(batch)
                self._cleanup(batch)
            rows_run = batch.rows_run
        if rows_run is not None:
            rows_run.cancel()
        return batch

    def _cleanup(self, batch: ApiBatch) -> None:
        for folder in batch.upload_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        batch.finished.set()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._todo:
                    self._wake.wait()
                batch = self._todo.pop(0)
                batch.state = "running"
            try:
                self._run(batch)
            except Exception as exc:  # noqa: BLE001 - a broken batch must not stop the worker
                batch.state, batch.error = "error", f"{type(exc).__name__}: {exc}"
                log.error("API batch %s failed: %s", batch.id, batch.error)
            finally:
                self._cleanup(batch)

    def _run(self, batch: ApiBatch) -> None:
        def started(runner, rows_run):
            batch.summary, batch.rows_run = runner.summary, rows_run

        summary_path = self.policy.results_dir / "batches" / f"{batch.id}.json"
        summary = run_rows(self.runner, batch.rows, summary_path, batch.stop, source=f"api batch {batch.id}",
                           on_start=started)
        batch.state = "cancelled" if batch.stop.is_set() else "done"
        batch.summary = summary


def register_batch_routes(route, runner: UIRunner, policy: ApiPolicy, new_id, read_body,
                          need_sd_checkpoint: bool = True, prefix: str = "") -> BatchQueue:
    """Add ``POST /batch``, ``GET /batches/{id}``, ``POST /batches/{id}/cancel`` with ``route``
    (``routes.register_routes``' helper: the same guard and error handling as ``/run``)."""
    queue = BatchQueue(runner, policy)

    async def start(request):
        raw = await read_body(request, policy.max_request_bytes)  # many uploads: use server paths
        try:
            payload = json.loads(raw)
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON") from None
        batch_id = new_id()

        def accept():  # decoding, file checks, probing and hashing off the event loop
            rows, dirs = parse_batch(payload, policy, runner, new_id, need_sd_checkpoint)
            try:
                return queue.submit(ApiBatch(batch_id, rows, dirs))
            except ApiError:
                for folder in dirs:
                    shutil.rmtree(folder, ignore_errors=True)
                raise

        batch = await asyncio.get_running_loop().run_in_executor(None, accept)
        from fastapi.responses import JSONResponse

        headers = {"Location": f"{prefix}/batches/{batch.id}", "X-Batch-Id": batch.id}
        return JSONResponse(batch.to_json(), status_code=202, headers=headers)

    def batch_or_404(batch_id: str) -> ApiBatch:
        batch = queue.get(batch_id)
        if batch is None:
            raise ApiError(404, f"no batch {batch_id}")
        return batch

    route("post", "/batch", start)
    route("get", "/batches/{batch_id}", lambda request, batch_id: batch_or_404(batch_id).to_json(), batch_id=str)

    def cancel(request, batch_id: str):
        batch_or_404(batch_id)
        return queue.cancel(batch_id).to_json()

    route("post", "/batches/{batch_id}/cancel", cancel, batch_id=str)
    return queue
