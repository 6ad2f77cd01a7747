"""The batch's progress display: one bar over rows, one over the frames of the rows running."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class BatchProgress:
    """A ``report`` callback for ``BatchRunner``: rows done/skipped/failed, frames of running rows
    (several at once with workers: their sum)."""

    def __init__(self, rows: int, quiet: bool = False) -> None:
        self.quiet = quiet
        self.frames: dict[int, tuple[int, int]] = {}  # row -> (done, total), running rows only
        self.finished_frames = 0
        self.counts = {"done": 0, "skipped": 0, "failed": 0, "cancelled": 0}
        self.rows_bar = self.frames_bar = None
        if not quiet:
            from tqdm import tqdm

            self.rows_bar = tqdm(total=rows, desc="rows", unit="row", position=0)
            self.frames_bar = tqdm(total=0, desc="frames", unit="frame", position=1)

    def __call__(self, event: tuple) -> None:
        if event[0] == "progress":
            _, index, done, total = event
            self.frames[index] = (int(done), int(total))
        elif event[0] == "finished":
            outcome = event[1]
            self.frames.pop(outcome.index, None)
            self.finished_frames += outcome.frames
            self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
            if self.rows_bar is not None:
                self.rows_bar.update(1)
                self.rows_bar.set_postfix({k: v for k, v in self.counts.items() if v}, refresh=True)
        self._draw()

    def _draw(self) -> None:
        if self.frames_bar is None:
            return
        done = self.finished_frames + sum(d for d, _ in self.frames.values())
        total = self.finished_frames + sum(t for _, t in self.frames.values())
        self.frames_bar.total = max(total, done)
        self.frames_bar.n = done
        self.frames_bar.refresh()

    def close(self) -> None:
        for bar in (self.frames_bar, self.rows_bar):
            if bar is not None:
                bar.close()
