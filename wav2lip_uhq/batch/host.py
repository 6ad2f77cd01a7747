"""Batches inside a host (the UI, the HTTP API): rows run as jobs of the host's ``UIRunner``, so
they take the host's GPU lock, progress display and Interrupt like any other job, and queue
behind (or between) the jobs started from the tab and ``/run``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .manifest import BatchRow
from .runner import BatchRunner, BatchSummary, SerialBackend

log = logging.getLogger(__name__)


class RunnerRows:
    """``run(config, progress)`` through a ``UIRunner``: one job per row, cancellable."""

    def __init__(self, runner, stop: threading.Event) -> None:
        self.runner = runner
        self.stop = stop
        self.job = None  # the row's job while it runs

    def __call__(self, config, progress: Callable[[str, int, int], None] | None):
        job = self.runner.start(config, wait=True)
        self.job = job
        job.on_progress = progress
        if self.stop.is_set():
            job.cancel_event.set()
        job.done.wait()
        self.job = None
        if job.error is not None:
            raise job.error
        return job.result

    def cancel(self) -> None:
        self.stop.set()
        job = self.job
        if job is not None:
            job.cancel_event.set()


def run_rows(runner, rows: Sequence[BatchRow], summary_path: Path | None, stop: threading.Event,
             progress: Callable[[tuple], None] | None = None, source: str = "",
             on_start: Callable[[BatchRunner, RunnerRows], None] | None = None) -> BatchSummary:
    """Run ``rows`` one after another as the runner's jobs; ``stop`` ends the batch (the row that
    runs is interrupted, the rest are ``cancelled``)."""
    rows_run = RunnerRows(runner, stop)
    backend = SerialBackend(rows_run, should_stop=stop.is_set)
    backend.name = "host"
    batch = BatchRunner(backend, summary_path, progress, retries=0, source=source)
    if on_start is not None:
        on_start(batch, rows_run)
    return batch.run(rows)


__all__ = ["RunnerRows", "run_rows"]
