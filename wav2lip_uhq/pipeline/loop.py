"""The frame loop: generate -> per-frame stages -> encode, batch by batch, in output order.

The generator runs one batch ahead in a worker thread: while it computes batch N+1, the
calling thread runs the stages on batch N, encodes it and tracks the next frames (two cores
busy instead of one waiting on the other). A batch ends at ``batch_size`` frames or at
``BATCH_FRAME_BYTES`` of frames, so two batches in flight cost the same memory at any
resolution. Cancel is checked before each submit, while waiting for each result and before
each stage; on cancel the batch in the worker is abandoned, and the worker is shut down on
every exit path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import Cancelled
from ..faces.stream import FaceGeometry
from ..generators import Generator
from ..outputs import extra_paths
from ..video import AudioTrack, VideoWriter
from .audio_prep import RunAudio
from .extras import ExtraWriters, draw_debug  # noqa: F401 - draw_debug re-exported
from .stages import FrameWork, Stage

ProgressFn = Callable[[str, int, int], None]
BATCH_FRAME_BYTES = 96 * 1024 * 1024
PREPARED_CACHE_BYTES = 512 * 1024 * 1024  # prepared generator inputs kept per source frame, at most


def batch_length(batch_size: int, frame_nbytes: int) -> int:
    """Frames per generator batch: ``batch_size``, fewer where they would pass ``BATCH_FRAME_BYTES``."""
    return max(1, min(batch_size, -(-BATCH_FRAME_BYTES // max(1, frame_nbytes))))


class Sink(Protocol):
    def write(self, item: FrameWork) -> None: ...


class Collect:
    """A sink that keeps the finished frames' records (the preview's)."""

    def __init__(self) -> None:
        self.items: list[FrameWork] = []

    def write(self, item: FrameWork) -> None:
        self.items.append(item)


class Encoder:
    """The encode stage: results into the output file, and the run's extra outputs beside it
    (``extras``), which appear only together, when complete (``abort`` leaves nothing)."""

    def __init__(self, writer: VideoWriter, extras: ExtraWriters | None = None) -> None:
        self.writer, self.extras = writer, extras

    @classmethod
    def open(cls, out: Path, width: int, height: int, rate, track: AudioTrack | None, config) -> Encoder:
        """``track`` None: video only (a ``--segment``, whose join muxes the audio once)."""
        writer = VideoWriter(out, width, height, rate, track, config.encode)
        paths = extra_paths(config, out)
        if not paths:
            return cls(writer)
        try:
            return cls(writer, ExtraWriters(paths, width, height, rate, track, config.encode))
        except BaseException:
            writer.abort()
            raise

    @property
    def outputs(self) -> dict[str, Path]:
        """The extra outputs by kind."""
        return {k: w.path for k, w in self.extras.writers.items()} if self.extras is not None else {}

    def write(self, item: FrameWork) -> None:
        self.writer.write(item.frame)
        if self.extras is not None:
            self.extras.write(item)

    def close(self) -> None:
        """Finish every file, then move them all into place."""
        try:
            self.writer.finish()
            if self.extras is not None:
                self.extras.finish()
        except BaseException:
            self.abort()
            raise
        try:
            self.writer.commit()
        except BaseException:
            if self.extras is not None:
                self.extras.abort()
            raise
        if self.extras is not None:
            self.extras.commit()

    def abort(self) -> None:
        self.writer.abort()
        if self.extras is not None:
            self.extras.abort()


@dataclass
class _Job:
    """A batch whose generator call is running in the worker thread."""

    items: list[FrameWork]  # the whole batch, in output order
    work: list[FrameWork]  # the frames the generator runs on
    future: Future | None


class FrameLoop:
    """Owns the batches, the generator's worker thread and the work in flight."""

    def __init__(
        self,
        generator: Generator,
        audio: RunAudio,
        stages: Sequence[Stage],
        sink: Sink,
        *,
        batch_size: int,
        keep_silent: bool = False,
        aligned: bool = False,
        keep_sources: bool = False,
        cancelled: Callable[[], bool] = lambda: False,
        report: ProgressFn = lambda stage, done, total: None,
        frames: int | None = None,
        reuse_prepared: bool = True,
    ) -> None:
        """``frames``: how many output frames this loop writes, for the progress (default: all);
        ``reuse_prepared`` False: inputs are prepared for every frame (a later speaker's loop,
        whose frames already carry an earlier speaker's new mouth)."""
        self.generator, self.audio, self.stages, self.sink = generator, audio, list(stages), sink
        self.batch_size, self.keep_silent, self.aligned = batch_size, keep_silent, aligned
        self.keep_sources = keep_sources  # the sink reads the original frames too (debug overlay)
        self.cancelled, self.report = cancelled, report
        self.n_out = audio.frames if frames is None else frames
        self.no_face = 0
        self.written = 0
        self._skipped = audio.skipped(keep_silent)
        self._reuse = generator.reuse_prepared and reuse_prepared
        self._batch: list[FrameWork] = []
        self._in_flight: list[_Job] = []
        self._prepared: dict[int, Any] = {}  # source index -> prepared input (worker thread only)
        self._prepared_bytes = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="wav2lip-uhq-generator")
        self.report("lip-sync", 0, self.n_out)  # models are loaded: the status says so from here on

    def __enter__(self) -> FrameLoop:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        # On cancel or error the batch being generated is abandoned, not waited for: Interrupt
        # stops within one generator batch (the worker ends on its own; its result is dropped).
        self._pool.shutdown(wait=exc_type is None, cancel_futures=True)

    def push(self, frame: np.ndarray, geometry: FaceGeometry, index: int, source_index: int) -> None:
        """Queue output frame ``index`` (``frame`` is only read, never written). Batches end on
        multiples of their length counted from output frame 0, so a ``--segment`` run batches its
        frames as the whole run does (the same generator calls, the same results)."""
        if not geometry.valid:
            self.no_face += 1
        self._batch.append(FrameWork(index, frame, source_index, geometry, keep_source=self.keep_sources))
        n = batch_length(self.batch_size, frame.nbytes)
        if len(self._batch) >= n or (index + 1) % n == 0:
            self._submit()

    def flush(self) -> None:
        """Submit the last batch and finish everything in flight."""
        if self._batch:
            self._submit()
        while self._in_flight:
            self._finish(self._in_flight.pop(0))

    def _submit(self) -> None:
        if self.cancelled():
            raise Cancelled("cancelled")
        batch, self._batch = self._batch, []
        work = [it for it in batch if it.geometry.valid and not self._skipped[it.index]]
        for it in work:
            size = (it.source.shape[1], it.source.shape[0])
            it.placement = self.generator.placement(it.geometry, it.index, self.aligned, size)
        future = None
        if work:
            features = self.audio.features.take([it.index for it in work])
            future = self._pool.submit(self._generate, work, features)
        self._in_flight.append(_Job(batch, work, future))
        while len(self._in_flight) > 1:
            self._finish(self._in_flight.pop(0))

    def _generate(self, work: list[FrameWork], features: np.ndarray) -> np.ndarray:
        """In the worker thread: prepare the inputs (reused per source frame when the generator
        says so), then one batched call."""
        return self.generator.generate([self._prepare(it) for it in work], features)

    def _prepare(self, item: FrameWork) -> Any:
        if not self._reuse:
            return self.generator.prepare(item.source, item.placement)
        hit = self._prepared.get(item.source_index)
        if hit is None:
            hit = self.generator.prepare(item.source, item.placement)
            size = int(getattr(hit, "nbytes", 0))
            if self._prepared_bytes + size <= PREPARED_CACHE_BYTES:
                self._prepared[item.source_index] = hit
                self._prepared_bytes += size
        return hit

    def _result(self, future: Future) -> np.ndarray:
        """The generator's result, watching for cancel while it computes."""
        while True:
            try:
                return future.result(timeout=0.05)
            except FutureTimeout:
                if self.cancelled():
                    raise Cancelled("cancelled") from None

    def _stage_progress(self, name: str, start: int, n: int):
        """A stage's progress as frames of the run; ``detail`` (e.g. ``crop 2/8``) joins the stage name."""

        def progress(fraction: float, detail: str | None = None) -> None:
            self.report(f"{name}, {detail}" if detail else name, start + round(fraction * n), self.n_out)

        return progress

    def _finish(self, job: _Job) -> None:
        if job.work:
            generated = self._result(job.future)
            for item, face in zip(job.work, generated):
                item.generated = face
            start, n = self.written, len(job.items)
            for stage in self.stages:
                if self.cancelled():
                    raise Cancelled("cancelled")
                stage.process(job.work, self._stage_progress(stage.name, start, n))
        for item in job.items:
            self.sink.write(item)
            self.written += 1
        self.report("lip-sync", self.written, self.n_out)


class _Handoff:
    """A sink that pushes a speaker's finished frame into the next speaker's loop."""

    def __init__(self, loop: FrameLoop, geometries: dict[int, list[FaceGeometry]], k: int, last: bool) -> None:
        self.loop, self.geometries, self.k, self.last = loop, geometries, k, last

    def write(self, item: FrameWork) -> None:
        geos = self.geometries.pop(item.index) if self.last else self.geometries[item.index]
        self.loop.push(item.frame, geos[self.k], item.index, item.source_index)


class SpeakerLoops:
    """One ``FrameLoop`` per speaker, chained: speaker k's finished frame is speaker k+1's input,
    so a frame is decoded once and each face is generated on its own worker thread."""

    def __init__(self, make_loop: Callable[[int, Sink], FrameLoop], speakers: int, sink: Sink) -> None:
        """``make_loop(k, sink)``: speaker k's loop, writing into ``sink``."""
        self._geometries: dict[int, list[FaceGeometry]] = {}
        self.loops: list[FrameLoop] = []
        try:
            for k in reversed(range(speakers)):
                self.loops.insert(0, make_loop(k, sink))
                sink = _Handoff(self.loops[0], self._geometries, k, k == speakers - 1)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise

    def __enter__(self) -> SpeakerLoops:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        for loop in self.loops:
            loop.__exit__(exc_type, *exc)

    def push(self, frame: np.ndarray, geometries: Sequence[FaceGeometry], index: int, source_index: int) -> None:
        """Output frame ``index`` with every speaker's face geometry (in speaker order)."""
        if len(self.loops) > 1:
            self._geometries[index] = list(geometries)
        self.loops[0].push(frame, geometries[0], index, source_index)

    def flush(self) -> None:
        for loop in self.loops:  # each flush feeds the next loop
            loop.flush()

    @property
    def no_face(self) -> list[int]:
        """Frames without the face, per speaker."""
        return [loop.no_face for loop in self.loops]
