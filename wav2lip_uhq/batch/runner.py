"""Running batch rows: content keys (resume), one row's execution, the summary, the serial backend.

A row's key is a hash of its face's and audio's bytes, the generator checkpoint's bytes and every
setting that changes the result. A finished row leaves its settings and key next to its output
(``<out>.json``, the UI's settings file plus ``batch_key``), so a second invocation skips rows
whose output exists with the same key: an interrupted batch resumes where it stopped. An output
that exists with another key is refused (one line) unless ``overwrite``.

Backends (serial here, ``workers``, ``ray_backend``) run the pending rows and call ``report``
with ``("progress", index, done, total)`` and ``("finished", outcome)``; ``BatchRunner`` does the
rest: plan, retries of transient failures, progress, the JSON summary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache import file_digest
from ..errors import Cancelled, Wav2LipUHQError
from ..files import write_atomic
from .manifest import BatchRow

log = logging.getLogger(__name__)

KEY_VERSION = 1
# Settings that do not change the frames written: where things are, how fast, on what.
NOT_IN_KEY = ("face", "audio", "out", "overwrite", "cache_dir", "models_dir", "results_dir", "allow_download",
              "device", "batch_size", "trust_torchscript")
Report = Callable[[tuple], None]


@dataclass
class RowOutcome:
    """What became of one row (one entry of the summary's ``rows``)."""

    index: int
    where: str
    face: str
    audio: str
    out: str
    status: str = "pending"  # pending, done, skipped, failed, cancelled
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0
    attempts: int = 0
    worker: str | None = None  # pid (or Ray actor) that ran it
    worker_rss_mb: float | None = None  # that worker's peak resident memory after the row
    transient: bool = False  # a failure worth retrying (not a bad input)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "transient"}


def _digest(path: Path, digests: dict[str, str]) -> str:
    key = str(Path(path).resolve())
    if key not in digests:
        digests[key] = file_digest(path)
    return digests[key]


def checkpoint_identity(config, digests: dict[str, str]) -> str:
    """The generator's bytes when the file is here, else its name (a released checkpoint)."""
    from ..checkpoints import KNOWN_CHECKPOINTS, local_path

    ckpt = config.checkpoint
    if ckpt is not None and str(ckpt) not in KNOWN_CHECKPOINTS:
        path = Path(ckpt)
    else:
        path = local_path(str(ckpt or "wav2lip_gan"), config.models_dir)
    return _digest(path, digests) if path.is_file() else str(ckpt)


def row_key(config, digests: dict[str, str] | None = None) -> str:
    """The content key of a row: inputs' bytes, checkpoint, result-changing settings."""
    digests = {} if digests is None else digests
    settings = {k: v for k, v in config.to_dict().items() if k not in NOT_IN_KEY}
    settings["checkpoint"] = checkpoint_identity(config, digests)
    blob = json.dumps({"v": KEY_VERSION, "face": _digest(config.face, digests),
                       "audio": _digest(config.audio, digests), "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def sidecar_for(out: Path) -> Path:
    return Path(f"{out}.json")


def finished_key(out: Path) -> str | None:
    """The key a finished batch row left beside ``out`` (None: no output, or not from a batch)."""
    if not Path(out).is_file():
        return None
    try:
        return json.loads(sidecar_for(out).read_text(encoding="utf-8")).get("batch_key")
    except (OSError, ValueError, AttributeError):
        return None


def write_sidecar(config, out: Path, key: str) -> None:
    data = config.to_dict()
    data.update(out=str(out), batch_key=key)
    write_atomic(sidecar_for(out), json.dumps(data, indent=2, sort_keys=True, default=str))


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    try:
        import resource  # not on Windows
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


def new_outcome(row: BatchRow) -> RowOutcome:
    c = row.config
    return RowOutcome(row.index, row.where, str(c.face), str(c.audio), str(c.out) if c.out is not None else "")


def execute_row(row: BatchRow, run: Callable, progress: Callable[[str, int, int], None] | None = None,
                retries: int = 0, worker: str | None = None) -> RowOutcome:
    """Run one row through ``run(config, progress)`` (a pipeline's run, or a UI runner's job), with
    up to ``retries`` more attempts after a failure that is not a bad input. Never raises for the
    row's own failure (the outcome says it); ``KeyboardInterrupt`` passes through."""
    outcome = new_outcome(row)
    outcome.worker = worker or str(os.getpid())
    t0 = time.perf_counter()
    while True:
        outcome.attempts += 1
        try:
            result = run(row.config, progress)  # the pipeline reserves the name and writes atomically
            if row.config.out is not None:  # a chosen name: resumable; a new name each time is not
                write_sidecar(row.config, Path(result.output), row.key)
            _save_speech(row.config, Path(result.output))
            outcome.status, outcome.error, outcome.frames = "done", None, int(result.frames)
            outcome.out = str(result.output)
            break
        except Cancelled as exc:
            outcome.status, outcome.error = "cancelled", str(exc) or "cancelled"
            break
        except Exception as exc:  # noqa: BLE001 - a failed row is reported, the batch goes on
            outcome.status, outcome.error = "failed", _message(exc)
            outcome.transient = not isinstance(exc, (Wav2LipUHQError, ValueError))
            log.debug("%s failed", row.where, exc_info=True)
            if not outcome.transient or outcome.attempts > retries:
                break
            log.warning("%s: %s; retrying (%d of %d)", row.where, outcome.error, outcome.attempts, retries)
    outcome.seconds = round(time.perf_counter() - t0, 3)
    outcome.worker_rss_mb = peak_rss_mb()
    return outcome


def _save_speech(config, output: Path) -> None:
    """A text row's spoken audio beside its result, as ``run --text`` leaves it."""
    speech = getattr(config, "speech", None)
    if speech is not None and (speech.text.strip() or speech.text_file):
        from ..ui_runner import save_speech

        save_speech(config, output)


def _message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, (Wav2LipUHQError, ValueError)) else f"{type(exc).__name__}: {text}"


class SerialBackend:
    """Rows one after another in this process, through one ``LipSyncPipeline`` (models kept loaded),
    or through any ``run(config, progress)`` (the UI runner's jobs)."""

    name = "serial"

    def __init__(self, run: Callable | None = None, device: str = "auto", should_stop: Callable[[], bool] = bool):
        self._run = run
        self.device = device
        self.should_stop = should_stop  # polled between rows (the UI's Interrupt)

    def runner(self) -> Callable:
        if self._run is None:
            from ..pipeline import LipSyncPipeline

            pipeline = LipSyncPipeline(self.device)
            self._run = lambda config, progress: pipeline.run(config, progress=progress)
        return self._run

    def run(self, rows: Sequence[BatchRow], report: Report, retries: int = 0) -> None:
        for row in rows:
            if self.should_stop():
                return
            outcome = execute_row(row, self.runner(), _row_frames(report, row.index), retries)
            report(("finished", outcome))
            if outcome.status == "cancelled":
                return


def _row_frames(report: Report, index: int) -> Callable[..., None]:
    """The pipeline's progress callback for row ``index``: its lip-sync frames as batch events."""

    def progress(stage: str, done: int, total: int, *_: object) -> None:
        if stage == "lip-sync" and total > 1:
            report(("progress", index, int(done), int(total)))

    return progress


@dataclass
class BatchSummary:
    """The JSON summary: totals and one entry per row, rewritten (atomically) after every row."""

    backend: str
    source: str
    outcomes: list[RowOutcome] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def counts(self) -> dict[str, int]:
        states = [o.status for o in self.outcomes]
        return {s: states.count(s) for s in ("done", "skipped", "failed", "cancelled", "pending")}

    def to_json(self) -> dict[str, Any]:
        end = self.finished or time.time()
        counts = self.counts()
        minutes = max(end - self.started, 1e-9) / 60
        return {
            "source": self.source, "backend": self.backend, "rows": len(self.outcomes), **counts,
            "frames": sum(o.frames for o in self.outcomes if o.status == "done"),
            "seconds": round(end - self.started, 3), "rows_per_minute": round(counts["done"] / minutes, 3),
            "started": _iso(self.started), "finished": _iso(self.finished) if self.finished else None,
            "failures": [f"{o.where}: {o.error}" for o in self.outcomes if o.status == "failed"],
            "results": [o.to_json() for o in self.outcomes],
        }

    def write(self, path: Path | None) -> None:
        if path is not None:
            write_atomic(path, json.dumps(self.to_json(), indent=2), parents=True)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class BatchRunner:
    """Plans the rows (skip finished ones, refuse clashing outputs), hands the rest to a backend,
    retries rows whose worker died, and keeps the summary and the progress display current."""

    def __init__(self, backend, summary_path: Path | None = None, progress=None, retries: int = 0,
                 source: str = "") -> None:
        self.backend = backend
        self.summary_path = Path(summary_path) if summary_path else None
        self.progress = progress
        self.retries = retries
        self.summary = BatchSummary(getattr(backend, "name", type(backend).__name__), source)

    def plan(self, rows: Sequence[BatchRow]) -> list[BatchRow]:
        """Keys for every row; the rows still to run (the others are skipped or refused now)."""
        digests: dict[str, str] = {}
        pending = []
        for row in rows:
            outcome = new_outcome(row)
            self.summary.outcomes.append(outcome)
            row.key = row_key(row.config, digests)
            if row.config.out is None:  # the name is chosen when it runs (the API without output_name)
                pending.append(row)
            elif finished_key(row.config.out) == row.key:
                outcome.status = "skipped"
            elif Path(row.config.out).exists() and not row.config.overwrite:
                outcome.status = "failed"
                outcome.error = (f"{row.config.out} exists (made from other inputs or settings); "
                                 "pass --overwrite to replace it")
            else:
                Path(row.config.out).parent.mkdir(parents=True, exist_ok=True)
                pending.append(row)
        return pending

    def _report(self, event: tuple) -> None:
        if event[0] == "finished":
            outcome = event[1]
            self.summary.outcomes[outcome.index] = outcome
            if outcome.status == "failed":
                log.error("%s: %s", outcome.where, outcome.error)
            self.summary.write(self.summary_path)
        if self.progress is not None:
            self.progress(event)

    def run(self, rows: Sequence[BatchRow]) -> BatchSummary:
        pending = self.plan(rows)
        for outcome in self.summary.outcomes:
            if outcome.status != "pending" and self.progress is not None:
                self.progress(("finished", outcome))
            if outcome.status == "failed":
                log.error("%s: %s", outcome.where, outcome.error)
        self.summary.write(self.summary_path)
        try:
            if pending:
                self.backend.run(pending, self._report, self.retries)
        finally:
            for outcome in self.summary.outcomes:
                if outcome.status == "pending":  # the batch was stopped before these rows
                    outcome.status, outcome.error = "cancelled", "not run: the batch was stopped"
            self.summary.finished = time.time()
            self.summary.write(self.summary_path)
        return self.summary


__all__ = ["BatchRunner", "BatchSummary", "RowOutcome", "SerialBackend", "execute_row", "finished_key",
           "row_key", "sidecar_for"]
