"""The API's job queue: bounded, in order, one worker thread through the UI's runner.

Output names are reserved when a job is accepted (two queued requests cannot both claim
``hello.mp4``); a queued job that is cancelled is ``cancelled`` at once; the job table is read
and written under one lock.
"""

from __future__ import annotations

import itertools
import logging
import queue
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import RunConfig
from ..ui_runner import Job, UIRunner

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """More jobs are waiting than the server accepts (HTTP 429)."""


class NameTaken(Exception):
    """Another accepted job will write this output (HTTP 409)."""


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
                           frames_without_face=r.frames_without_face, notes=list(getattr(r, "notes", [])),
                           settings=str(job.settings_path) if job.settings_path else None,
                           extra_outputs=extra_listing(getattr(r, "extra_outputs", {})))
        if self.error:
            out["error"] = self.error
        return out


def extra_listing(extras: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """The job's extra outputs for its JSON: kind -> the name ``GET .../files/{name}`` serves (a
    PNG sequence: its folder, and the frame names inside it, ``{folder}/000000.png``)."""
    out: dict[str, dict[str, Any]] = {}
    for kind, path in extras.items():
        path = Path(path)
        entry: dict[str, Any] = {"name": path.name}
        if path.is_dir():
            entry["frames"] = sorted(p.name for p in path.iterdir() if p.suffix == ".png")
        out[kind] = entry
    return out


class JobQueue:
    """API jobs, run in order by one worker thread through the UI's runner (UI jobs go first
    when they hold the runner; the worker then waits instead of failing)."""

    def __init__(self, runner: UIRunner, keep: int = 200, max_queued: int = 16) -> None:
        self.runner = runner
        self.keep = keep
        self.max_queued = max_queued
        self.jobs: OrderedDict[str, ApiJob] = OrderedDict()
        self._queue: queue.Queue[ApiJob] = queue.Queue()
        self._lock = threading.Lock()
        self._reserved: dict[Path, str] = {}  # output path -> job id, until the job ends
        self._worker: threading.Thread | None = None
        self._current: str | None = None  # the job the worker has taken
        self._ids = itertools.count()

    def new_id(self) -> str:
        return f"{next(self._ids):04d}-{uuid.uuid4().hex[:12]}"

    def submit(self, job_id: str, config: RunConfig, upload_dir: Path | None = None) -> ApiJob:
        """Accept a job: ``QueueFull`` when too many wait, ``NameTaken`` when its output is claimed."""
        item = ApiJob(job_id, config, upload_dir)
        with self._lock:
            waiting = sum(1 for j in self.jobs.values() if not j.finished.is_set() and j.id != self._current)
            if waiting >= self.max_queued:
                raise QueueFull(f"{waiting} jobs are already waiting; try again later")
            if config.out is not None:
                out = Path(config.out).resolve()
                if out in self._reserved or out.exists():
                    raise NameTaken(f"output_name: {out.name} is already taken in the results folder")
                self._reserved[out] = job_id
            self.jobs[job_id] = item
            self._forget_old()
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="wav2lip-uhq-api", daemon=True)
                self._worker.start()
        self._queue.put(item)
        return item

    def _forget_old(self) -> None:
        while len(self.jobs) > self.keep:  # forget the oldest finished jobs
            oldest = next((k for k, j in self.jobs.items() if j.finished.is_set()), None)
            if oldest is None:
                break
            del self.jobs[oldest]

    def get(self, job_id: str) -> ApiJob | None:
        with self._lock:
            return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> ApiJob | None:
        with self._lock:
            item = self.jobs.get(job_id)
            if item is None:
                return None
            item.cancel_requested = True
            if item.state == "queued":  # not started: cancelled now, not when the running job ends
                item.state = "cancelled"
                self._release(item)
                item.finished.set()
        if item.job is not None:
            item.job.cancel_event.set()
        return item

    def status(self) -> dict[str, Any]:
        with self._lock:
            states = [j.state for j in self.jobs.values()]
        return {"busy": self.runner.busy, "queued": states.count("queued"),
                "running": states.count("running"), "version": __version__}

    def _release(self, item: ApiJob) -> None:
        """Under the lock: the job's output name is free again (its file exists now, or never will)."""
        for path, owner in list(self._reserved.items()):
            if owner == item.id:
                del self._reserved[path]

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            self._current = item.id
            try:
                self._run(item)
            except Exception as exc:  # noqa: BLE001 - a failed job must not stop the worker
                item.state, item.error = "error", f"{type(exc).__name__}: {exc}"
                log.error("API job %s failed: %s", item.id, item.error)
                log.debug("API job %s", item.id, exc_info=True)
            finally:
                if item.upload_dir is not None:
                    shutil.rmtree(item.upload_dir, ignore_errors=True)
                with self._lock:
                    self._release(item)
                item.finished.set()

    def _run(self, item: ApiJob) -> None:
        with self._lock:
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
