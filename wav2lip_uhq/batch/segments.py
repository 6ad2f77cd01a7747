"""One long run split across workers: time segments run in parallel, joined without re-encoding.

The output frames are cut into contiguous segments ``[start, end)``; each runs as a row on a
batch backend (``workers``: processes on this machine, ``ray_backend``: Ray actors, ``serial``)
with ``--segment START:END``. A segment run tracks a few frames on both sides of its range
(the smoothing's look-behind and look-ahead) and reads the whole audio, so each frame gets the
geometry, the audio window and the generator batch of the single run; it writes its frames
alone, without audio. ``video.join_videos`` then copies the segments' packets into the output
(each segment starts with a key frame: no seam, no re-encode) and muxes the audio once. In
lossless mode the result is frame for frame the single run's.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, Wav2LipUHQError
from ..outputs import reserve_output
from ..video import AudioTrack, join_videos, probe, read_audio_track
from .manifest import BatchRow

log = logging.getLogger(__name__)

MIN_SEGMENT_FRAMES = 8  # shorter segments cost more in overlap than they gain in parallel
Progress = Callable[[str, int, int], None]


@dataclass
class SplitResult:
    """A split run's output, with what each segment did."""

    output: Path
    frames: int
    fps: float
    segments: list[tuple[int, int]]
    seconds: list[float] = field(default_factory=list)  # per segment, in its worker


def estimated_frames(config, audio: AudioTrack) -> tuple[int, float]:
    """(the run's output frames, about: every generator covers the audio, fps); the last
    segment runs on to the true end, which the run itself knows."""
    info = probe(config.face)
    fps = float(config.frames.fps) if info.is_image else info.fps
    if not fps or fps <= 0:
        raise InputError(f"{config.face}: the video has no usable frame rate")
    return max(1, math.ceil(audio.duration * fps)), fps


def plan_segments(n_frames: int, parts: int, min_frames: int = MIN_SEGMENT_FRAMES) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering [0, n_frames), as even as whole frames allow (fewer
    when they would be shorter than ``min_frames``)."""
    if n_frames < 1 or parts < 1:
        raise ValueError(f"cannot split {n_frames} frames into {parts} segments")
    parts = max(1, min(parts, n_frames // max(1, min_frames)))
    edges = [round(k * n_frames / parts) for k in range(parts + 1)]
    return list(itertools.pairwise(edges))


def part_suffix(out: Path, lossless: bool) -> str:
    """The segments' container: lossless FFV1 in Matroska, VP9 in WebM, H.264 in MP4 (exact
    decode timestamps, which the copy keeps; Matroska stores presentation times only)."""
    if lossless:
        return ".mkv"
    return ".webm" if out.suffix.lower() == ".webm" else ".mp4"


def check_splittable(config) -> None:
    """What a split run cannot do, as one line, before any worker starts."""
    from ..outputs import extra_kinds

    if extra_kinds(config):
        what = "--debug-video" if config.composite.debug_video is not None else "--extra-outputs"
        raise InputError(f"{config.face}: {what} is not split across workers; run it whole")
    if config.frames.segment is not None:
        raise InputError(f"{config.face}: --segment and --workers split the run twice; give one of them")
    if config.speakers or config.ranges or config.delay:
        raise InputError(f"{config.face}: --speaker, --range and --delay make the run's own audio mix, which the "
                         "join of a split run does not; run it whole")
    if config.mode == "uhq" and config.refine.temporal_blend > 0:
        raise InputError(f"{config.face}: uhq with --temporal-blend carries each refinement into the next frame, "
                         "so the run cannot be split; use --temporal-blend 0 or run it whole")


def segment_rows(config, segments: list[tuple[int, int]], folder: Path, out: Path, last_end: int) -> list[BatchRow]:
    """One batch row per segment: the run's settings, ``--segment`` and a part file in ``folder``
    (the last segment ends at ``last_end``, past the run's end: clipped to it)."""
    suffix = part_suffix(out, config.encode.lossless)
    rows = []
    for k, (a, b) in enumerate(segments):
        end = last_end if k == len(segments) - 1 else b
        part = dataclasses.replace(
            config, out=folder / f"part{k:04d}{suffix}", overwrite=True,
            frames=dataclasses.replace(config.frames, segment=(a, end)),
        )
        rows.append(BatchRow(k, f"segment {a}:{end}", part))
    return rows


def run_split(config, backend, parts: int, progress: Progress | None = None) -> SplitResult:
    """``config`` as one output, its frames split into ``parts`` segments run on ``backend``
    (``WorkerPool``, ``RayBackend`` or ``SerialBackend``); the output appears when complete."""
    check_splittable(config)
    audio = read_audio_track(config.audio)
    n_est, fps = estimated_frames(config, audio)
    segments = plan_segments(n_est, parts)
    progress = progress or (lambda stage, done, total: None)
    with reserve_output(config) as out:
        folder = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.segments"  # beside it: every node sees it
        folder.mkdir()
        try:
            rows = segment_rows(config, segments, folder, out, n_est + int(fps) + 8)
            outcomes = _run_rows(backend, rows, n_est, progress)
            progress("joining", 0, 1)
            frames = join_videos([Path(o.out) for o in outcomes], out, audio, config.encode)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    spans = [(r.config.frames.segment[0], r.config.frames.segment[0] + o.frames) for r, o in zip(rows, outcomes)]
    log.info("%s: %d frames in %d segments joined", out, frames, len(spans))
    return SplitResult(out, frames, fps, spans, seconds=[o.seconds for o in outcomes])


def _run_rows(backend, rows: list[BatchRow], n_est: int, progress: Progress) -> list:
    """The segments' outcomes in order; the first failure fails the run (one line)."""
    outcomes: dict[int, object] = {}
    done: dict[int, int] = {}

    def report(event: tuple) -> None:
        if event[0] == "progress":
            done[event[1]] = event[2]
            progress("lip-sync", min(sum(done.values()), n_est), n_est)
        elif event[0] == "finished":
            outcomes[event[1].index] = event[1]

    backend.run(rows, report, retries=1)  # a worker that died, or a failure not of the input: once more
    for row in rows:
        outcome = outcomes.get(row.index)
        if outcome is None or outcome.status != "done":
            why = getattr(outcome, "error", None) or "it did not finish"
            raise Wav2LipUHQError(f"{row.config.face}: {row.where} failed: {why}")
    return [outcomes[row.index] for row in rows]
