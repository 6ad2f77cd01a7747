"""``--workers N``: rows across N processes on this machine, each with its own loaded models.

Processes are spawned (never forked: torch and CUDA do not survive a fork), take rows from one
queue and report progress and outcomes on another. With several CUDA GPUs each worker sees one
(``CUDA_VISIBLE_DEVICES``, round robin); on the CPU the cores are shared out (``torch`` threads
per worker = cores / N). A worker that dies (out of memory, a crash) costs only its row, which is
given to a new worker while ``retries`` allow, else reported as failed.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
from collections import Counter
from collections.abc import Sequence

from .manifest import BatchRow
from .runner import Report, execute_row, new_outcome

log = logging.getLogger(__name__)


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` names them."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch CUDA: CPU workers
        return []


def worker_env(worker: int, workers: int, gpus: Sequence[str]) -> tuple[dict[str, str], int]:
    """(environment, torch threads) for worker ``worker`` of ``workers``."""
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[worker % len(gpus)]
    return env, max(1, (os.cpu_count() or 1) // workers)


def _worker_main(worker: int, env: dict[str, str], threads: int, device: str, tasks, results,
                 retries: int) -> None:
    """One worker process: a pipeline kept for all its rows; Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)
    import torch

    torch.set_num_threads(threads)
    from ..pipeline import LipSyncPipeline

    pipeline = LipSyncPipeline(device)

    def run(config, progress):
        return pipeline.run(config, progress=progress)

    while True:
        row = tasks.get()
        if row is None:
            return
        results.put(("started", worker, row.index))

        def progress(stage, done, total, *_, index=row.index):
            if stage == "lip-sync" and total > 1:
                results.put(("progress", index, int(done), int(total)))

        results.put(("finished", execute_row(row, run, progress, retries, worker=f"pid {os.getpid()}")))


class WorkerPool:
    """Runs rows in ``workers`` spawned processes (see the module doc)."""

    def __init__(self, workers: int, device: str = "auto") -> None:
        if workers < 1:
            raise ValueError(f"--workers must be at least 1 (got {workers})")
        self.workers = workers
        self.device = device
        self.name = f"workers:{workers}"
        self.restarts = 0

    def _gpus(self) -> list[str]:
        return visible_gpus() if self.device in ("auto", "cuda") else []

    def run(self, rows: Sequence[BatchRow], report: Report, retries: int = 0) -> None:
        ctx = mp.get_context("spawn")
        tasks, results = ctx.Queue(), ctx.Queue()
        by_index = {row.index: row for row in rows}
        for row in rows:
            tasks.put(row)
        gpus, n = self._gpus(), min(self.workers, len(rows))
        procs: dict[int, mp.Process] = {}
        current: dict[int, int | None] = {}  # worker -> the row it runs
        deaths: Counter[int] = Counter()  # row -> workers lost on it
        remaining = set(by_index)

        def start(worker: int) -> None:
            env, threads = worker_env(worker, n, gpus)
            p = ctx.Process(target=_worker_main, name=f"wav2lip-uhq-worker-{worker}", daemon=True,
                            args=(worker, env, threads, self.device, tasks, results, retries))
            p.start()
            procs[worker], current[worker] = p, None

        for w in range(n):
            start(w)
        try:
            while remaining:
                try:
                    event = results.get(timeout=0.5)
                except queue.Empty:
                    self._reap(procs, current, deaths, by_index, remaining, tasks, report, retries, start)
                    continue
                if event[0] == "started":
                    current[event[1]] = event[2]
                elif event[0] == "finished":
                    remaining.discard(event[1].index)
                    for w, idx in current.items():
                        if idx == event[1].index:
                            current[w] = None
                    report(event)
                else:
                    report(event)
        finally:
            for _ in procs:
                tasks.put(None)
            for p in procs.values():
                p.join(timeout=5 if not remaining else 0.1)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=5)

    def _reap(self, procs, current, deaths, by_index, remaining, tasks, report, retries, start) -> None:
        """Workers that died: their row goes to a new worker (or fails), and a new worker starts."""
        for worker, p in list(procs.items()):
            if p.is_alive():
                continue
            index = current.pop(worker, None)
            del procs[worker]
            log.warning("batch worker %d exited (code %s)", worker, p.exitcode)
            if index is not None and index in remaining:
                deaths[index] += 1
                if deaths[index] <= retries:
                    tasks.put(by_index[index])
                else:
                    outcome = new_outcome(by_index[index])
                    outcome.status, outcome.attempts = "failed", deaths[index]
                    outcome.error = f"the worker process running it exited (code {p.exitcode})"
                    remaining.discard(index)
                    report(("finished", outcome))
            self.restarts += 1
            if self.restarts > self.workers + len(by_index):  # they die on start: give up on the rest
                for index in sorted(remaining - {i for i in current.values() if i is not None}):
                    outcome = new_outcome(by_index[index])
                    outcome.status, outcome.error = "failed", f"batch workers keep exiting (code {p.exitcode})"
                    remaining.discard(index)
                    report(("finished", outcome))
            elif remaining:
                start(max(procs, default=-1) + 1 if procs else worker)
