"""``--ray ADDRESS|auto|local``: rows as tasks of Ray actors that keep their models loaded.

Each actor (``wav2lip-uhq-worker-N`` in the cluster's dashboard) holds one ``LipSyncPipeline``
and gets ``num_gpus`` GPUs (a fraction shares one) and ``num_cpus`` cores; the driver keeps one
row in flight per actor. Inputs and outputs are paths, so every node must see them at the same
place (a shared folder), and every node needs wav2lip-uhq installed and the models folder. A row
whose actor died (node lost, out of memory) is given to another actor while ``retries`` allow;
the actor itself is restarted once by Ray. ``local`` starts a Ray instance on this machine for
the batch; ``auto`` or an address joins a running cluster. Ray is the optional extra ``ray``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Sequence

from ..errors import InputError
from .manifest import BatchRow
from .runner import Report, execute_row, new_outcome

log = logging.getLogger(__name__)


class RowActor:
    """The actor's body: one pipeline for every row it is given."""

    def __init__(self, device: str, threads: int = 0) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from ..pipeline import LipSyncPipeline

        self.pipeline = LipSyncPipeline(device)

    def run(self, row: BatchRow, retries: int, events=None):
        """One row; its frame progress goes to the driver through ``events`` (a Ray queue)."""

        def run(config, progress):
            return self.pipeline.run(config, progress=progress)

        def progress(stage, done, total, *_):
            if events is not None and stage == "lip-sync" and total > 1:
                with contextlib.suppress(Exception):  # a full or lost queue costs a progress update only
                    events.put_nowait(("progress", row.index, int(done), int(total)))

        return execute_row(row, run, progress, retries, worker=f"ray pid {os.getpid()}")


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError('--ray needs Ray: pip install "wav2lip-uhq[ray]"') from None
    return ray


class RayBackend:
    """Runs rows on Ray actors (see the module doc)."""

    def __init__(self, address: str = "auto", workers: int | None = None, num_gpus: float | None = None,
                 num_cpus: float = 1.0, device: str = "auto") -> None:
        self.address, self.workers, self.num_gpus, self.num_cpus = address, workers, num_gpus, num_cpus
        self.device = device
        self.name = f"ray:{address}"

    def _connect(self, ray) -> bool:
        """Join (or start) Ray; True when this call did, so the batch disconnects at the end."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_ACCEPT_CLOUDPICKLE_WARNINGS", "1")
        if self.address == "local":
            cpus = max(1, int((self.workers or 1) * self.num_cpus + 0.999))
            ray.init(address="local", num_cpus=cpus, log_to_driver=False, include_dashboard=False)
        else:
            try:
                ray.init(address=self.address, log_to_driver=False)
            except ConnectionError as exc:
                raise InputError(f"--ray {self.address}: no Ray cluster there ({exc})") from None
        return True

    def _actors(self, ray, rows: int):
        resources = ray.cluster_resources()
        gpus = self.num_gpus if self.num_gpus is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
        n = self.workers or (max(1, int(resources.get("GPU", 0) // gpus)) if gpus else 1)
        threads = max(1, int(self.num_cpus)) if not gpus else 0
        actor = ray.remote(num_cpus=self.num_cpus, num_gpus=gpus, max_restarts=1)(RowActor)
        return [actor.options(name=f"wav2lip-uhq-worker-{i}-{os.getpid()}").remote(self.device, threads)
                for i in range(min(n, rows))]

    def run(self, rows: Sequence[BatchRow], report: Report, retries: int = 0) -> None:
        ray = import_ray()
        owned = self._connect(ray)
        try:
            self._run(ray, rows, report, retries)
        finally:
            if owned:
                ray.shutdown()

    def _run(self, ray, rows: Sequence[BatchRow], report: Report, retries: int) -> None:
        from ray.exceptions import RayActorError, RayTaskError
        from ray.util.queue import Queue

        todo = deque(rows)
        idle = self._actors(ray, len(rows))
        events = Queue(maxsize=10_000, actor_options={"num_cpus": 0})  # frame progress from the actors
        flight: dict = {}  # ObjectRef -> (actor, row)
        lost: dict[int, int] = {}
        while todo or flight:
            while todo and idle:
                actor, row = idle.pop(), todo.popleft()
                flight[actor.run.remote(row, retries, events)] = (actor, row)
            done, _ = ray.wait(list(flight), num_returns=1, timeout=0.5)
            for event in _drain(events):
                report(event)
            if not done:
                continue
            actor, row = flight.pop(done[0])
            try:
                outcome = ray.get(done[0])
            except (RayActorError, RayTaskError) as exc:
                lost[row.index] = lost.get(row.index, 0) + 1
                log.warning("%s: its Ray actor failed (%s)", row.where, type(exc).__name__)
                if lost[row.index] <= retries:
                    todo.append(row)
                else:
                    outcome = new_outcome(row)
                    outcome.status, outcome.attempts = "failed", lost[row.index]
                    outcome.error = f"its Ray actor failed: {type(exc).__name__}"
                    report(("finished", outcome))
                idle.append(actor)  # Ray restarts it (max_restarts); a dead one fails its next row fast
                continue
            idle.append(actor)
            report(("finished", outcome))


def _drain(events) -> list:
    try:
        return events.get_nowait_batch(events.qsize())
    except Exception:  # noqa: BLE001 - progress only
        return []
