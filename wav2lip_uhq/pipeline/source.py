"""Decode and track: the face input's frames, in output order, with their face geometry.

``FaceFrames`` decodes the first pass once (its first frame is peeked from the same stream to
size the tracker and the encoder) in a thread, so decoding overlaps inference; a video shorter
than the audio loops from memory when it fits, otherwise by decoding again. A frame kept for the
loops is shared, hence marked read-only; any other is handed over to its output frame's record,
which may write into it once tracking is done with it. ``FaceTracking`` turns detections (from the
detector or the on-disk cache) and landmarks into smoothed per-frame geometry with a short
look-ahead.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..cache import DetectionCache, LandmarkCache, default_cache_dir, file_digest
from ..config import FrameOptions, RunConfig
from ..errors import InputError, NoFaceError
from ..faces.stream import FaceGeometry, FaceTrackStream
from ..video import MediaInfo, iter_frames

log = logging.getLogger(__name__)

LOOP_CACHE_BYTES = 768 * 1024 * 1024  # keep a looping clip's frames in RAM up to this size


def preprocess_frame(frame: np.ndarray, opts: FrameOptions) -> np.ndarray:
    """Upstream's order: resize by factor, rotate, crop."""
    if opts.resize_factor > 1:
        h, w = frame.shape[:2]
        frame = cv2.resize(frame, (w // opts.resize_factor, h // opts.resize_factor))
    if opts.rotate:
        frame = cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)
    top, bottom, left, right = opts.crop
    if (top, bottom, left, right) != (0, -1, 0, -1):
        h, w = frame.shape[:2]
        bottom = h if bottom == -1 else bottom
        right = w if right == -1 else right
        frame = np.ascontiguousarray(frame[top:bottom, left:right])
        if frame.size == 0:
            raise InputError(f"--crop {opts.crop} leaves an empty frame")
    return frame


def loop_mode(config: RunConfig) -> str:
    """``config.frames.loop``, except MuseTalk's reference behaviour (``fast`` with a MuseTalk
    checkpoint): its forward-then-backward cycle, both ends shown twice ("mirror")."""
    from ..model_needs import uses_musetalk

    return "mirror" if config.mode == "fast" and uses_musetalk(config, box_too=True) else config.frames.loop


def loop_index(i: int, n_frames: int, mode: str) -> int:
    """Input frame used for output frame ``i`` when the video is shorter than the audio."""
    if mode == "mirror":
        p = i % (2 * n_frames)
        return p if p < n_frames else 2 * n_frames - 1 - p
    if mode == "pingpong" and n_frames > 1:
        period = 2 * n_frames - 2
        p = i % period
        return p if p < n_frames else period - p
    return i % n_frames


def threaded(iterator: Iterator, maxsize: int = 8) -> Iterator:
    """Run ``iterator`` in a thread (decoding overlaps inference); exceptions re-raised here."""
    q: queue.Queue = queue.Queue(maxsize)
    done = object()
    stop = threading.Event()

    def worker():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            q.put(exc)

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _decoded(config: RunConfig, limit: int | None = None, start: int = 0) -> Iterator[np.ndarray]:
    """Preprocessed frames of the face input from frame ``start``, decoded in a thread."""
    frames = iter_frames(config.face, limit=limit, start=start)
    return threaded(preprocess_frame(f, config.frames) for f in frames)


class FaceFrames:
    """The decode stage: the first pass, then the loops when the audio outlasts the video."""

    def __init__(self, config: RunConfig, info: MediaInfo, n_out: int, start: int = 0) -> None:
        """``start`` > 0: the first pass begins at that frame (a ``--segment`` inside the video)."""
        self.config, self.n_out, self.start = config, n_out, start
        self._stream = _decoded(config, limit=n_out - start, start=start)
        try:
            self.first = next(self._stream)
        except StopIteration:
            raise InputError(f"{config.face}: no frame could be decoded") from None
        self.height, self.width = self.first.shape[:2]
        # Frames are kept for later loops only when the audio outlasts the video.
        loops = start == 0 and (info.is_image or not info.frame_count or info.frame_count < n_out)
        self._kept: list[np.ndarray] | None = [] if loops else None
        self.count = start  # frames of the first pass so far (counted from frame 0)

    def first_pass(self) -> Iterator[np.ndarray]:
        kept_bytes = 0
        first, self.first = self.first, None  # handed over like every other frame
        for frame in itertools.chain([first], self._stream):
            if frame.shape[:2] != (self.height, self.width):
                raise InputError(
                    f"{self.config.face}: frame {self.count} changes size ({frame.shape[1]}x{frame.shape[0]})"
                )
            if self._kept is not None:
                frame.flags.writeable = False  # shared with the later loops
                kept_bytes += frame.nbytes
                self._kept.append(frame)
                if kept_bytes > LOOP_CACHE_BYTES:
                    self._kept = None  # too large: later loops decode again
            self.count += 1
            yield frame

    def loops(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """(output index, source index, frame) for the output frames after the first pass."""
        n, mode = self.count, loop_mode(self.config)
        if self.n_out <= n:
            return
        if self._kept is None and mode != "forward":
            log.warning("%s looping needs the frames in memory; this video is too large, looping forward", mode)
            mode = "forward"
        i = n
        while i < self.n_out:
            if self._kept is not None:
                j = loop_index(i, n, mode)
                yield i, j, self._kept[j]
                i += 1
                continue
            stream = _decoded(self.config)  # a forward loop starts again at frame 0: decode once more
            try:
                for j, frame in enumerate(stream):
                    if i >= self.n_out:
                        break
                    yield i, j, frame
                    i += 1
            finally:
                stream.close()

    def close(self) -> None:
        """Stop the decoding thread (every exit path)."""
        self._stream.close()


class FaceTracking:
    """The track stage: detections (or the cache's) + landmarks -> geometry per source frame, for
    one face or several (one stream per speaker, all fed the same detections)."""

    def __init__(self, config: RunConfig, info: MediaInfo, n_out: int, detector: Any,
                 streams: FaceTrackStream | Sequence[FaceTrackStream]):
        self.streams = [streams] if isinstance(streams, FaceTrackStream) else list(streams)
        self.config, self.detector, self.stream = config, detector, self.streams[0]
        self.info = info
        _check_box(config, self.stream.width, self.stream.height)
        self.batch_size = config.faces.batch_size
        self.offset = 0  # the source frame the stream's first frame is (a --segment's context start)
        self._det_key = None
        self._lm_keys: list[str | None] = [None] * len(self.streams)
        self.cached_dets = None
        self.cached_lms: list[np.ndarray | None] = [None] * len(self.streams)
        # Caches: keyed by the face file's content and everything that changes the result.
        cache_dir = config.cache_dir or default_cache_dir()
        self._det_cache, self._lm_cache = DetectionCache(cache_dir), LandmarkCache(cache_dir)
        need = 1 if info.is_image else min(n_out, info.frame_count or n_out)
        if config.faces.box is None or self.stream.landmark_detector is not None:
            self._load_caches(need)
        if self.cached_dets is not None:
            log.info("face detections loaded from the cache")

    def _load_caches(self, need: int) -> None:
        fo, faces = self.config.frames, self.config.faces
        digest = file_digest(self.config.face)
        settings = {**self.detector.settings(), "resize": fo.resize_factor, "rotate": fo.rotate, "crop": list(fo.crop)}
        if getattr(self.info, "is_vfr", False):  # frames read on a constant grid: another frame order
            settings["grid_fps"] = self.info.fps
        if faces.box is None:
            self._det_key = self._det_cache.key(digest, settings)
            self.cached_dets = self._det_cache.load(self._det_key, need)
        for k, stream in enumerate(self.streams):  # landmarks: one cache entry per face
            lms = stream.landmark_detector
            if lms is not None:
                extra = {**lms.settings(), "face_index": stream.face_index, "pads": list(faces.pads)}
                self._lm_keys[k] = self._lm_cache.key(digest, {**settings, **extra})
                self.cached_lms[k] = self._lm_cache.load(self._lm_keys[k], need)

    def _no_face_message(self, n_frames: int, k: int = 0) -> str:
        """Why no frame has the face asked for: none found, or not the N-th one."""
        face, f, index = self.config.face, self.config.faces, self.streams[k].face_index
        most = max((len(np.asarray(d).reshape(-1, 5)) for d in self.stream.raw), default=0)
        who = f" (speaker {k + 1})" if len(self.streams) > 1 else ""
        if f.box is None and most and index is not None and index >= most:
            return (f"{face}: --face-index {index}{who} asks for face {index + 1} from the left, but no "
                    f"frame has more than {most} (use 0..{most - 1}, or -1 for the largest)")
        return (f"{face}: no face found in any of its {n_frames} frames "
                "(try --detector s3fd/dlib, --resize-factor, or a fixed --box)")

    @property
    def detection_cached(self) -> bool:
        return self.cached_dets is not None

    def add(self, frames_bgr: list[np.ndarray]) -> None:
        """Detect (unless cached) and add a batch of frames to every face's track."""
        start = self.offset + len(self.stream.raw)
        if self.cached_dets is not None:
            dets = self.cached_dets[start : start + len(frames_bgr)]
        elif self.config.faces.box is not None:
            dets = self.detector.detect(frames_bgr)  # a fixed box reads no pixels
        else:
            dets = self.detector.detect([np.ascontiguousarray(f[:, :, ::-1]) for f in frames_bgr])
        for stream, cached in zip(self.streams, self.cached_lms):
            stream.add(dets, frames_bgr, cached[start : start + len(frames_bgr)] if cached is not None else None)

    def ready(self, end: bool = False) -> Iterator[tuple[int, list[FaceGeometry]]]:
        """(frame index, every face's geometry) for the frames that became final."""
        done = [list(stream.ready(end)) for stream in self.streams]  # the same frames for every face
        for items in zip(*done):
            yield items[0][0], [geo for _, geo in items]

    def same_faces(self) -> list[tuple[int, int]]:
        """Speakers (numbered from 1) whose tracks follow one face in most frames where both have
        one: a face index mistake ("the largest" is often face 0 too)."""
        pairs = []
        for a, b in itertools.combinations(range(len(self.streams)), 2):
            sa, sb = self.streams[a].selected, self.streams[b].selected
            both = ~np.isnan(sa[:, 0]) & ~np.isnan(sb[:, 0])
            if both.any() and (np.abs(sa[both] - sb[both]).max(axis=1) < 1).mean() > 0.5:
                pairs.append((a + 1, b + 1))
        return pairs

    def geometries(self, j: int) -> list[FaceGeometry]:
        return [stream.geometry(j) for stream in self.streams]

    def finish(self, n_frames: int, whole: bool = True) -> None:
        """After the first pass: a video without any face is an error; new detections are cached.
        A part of a run (``whole`` False) caches nothing and leaves faceless frames as they are."""
        for k, stream in enumerate(self.streams):
            if not any(g.valid for g in stream.final):
                if whole:
                    raise NoFaceError(self._no_face_message(n_frames, k))
                log.warning("%s: no face in this segment's frames; they are left unchanged", self.config.face)
        if not whole:
            return
        if self.cached_dets is None and self._det_key is not None:
            self._det_cache.save(self._det_key, self.stream.raw)
        for stream, key, cached in zip(self.streams, self._lm_keys, self.cached_lms):
            if cached is None and key is not None:
                self._lm_cache.save(key, stream.raw_landmarks)


@dataclass(frozen=True)
class Span:
    """The output frames a run writes, [start, end), and the source frames it tracks for them:
    from ``track_from`` (0 when loops need every frame) up to ``track_to`` (None: the end)."""

    start: int
    end: int
    track_from: int = 0
    track_to: int | None = None

    @property
    def tracks_all(self) -> bool:
        """Every source frame is tracked (what caches are made of)."""
        return self.track_from == 0 and self.track_to is None


def segment_span(config: RunConfig, info: MediaInfo, n_out: int, stream: FaceTrackStream) -> Span:
    """The span of ``--segment`` (the whole run without one). A segment's frames get the single
    run's geometry: tracking starts early enough for the smoothing's look-behind (at a detection
    batch boundary, so batches match too) and runs on for its look-ahead."""
    seg = config.frames.segment
    if seg is None:
        return Span(0, n_out)
    start, end = int(seg[0]), min(int(seg[1]), n_out)
    where = f"{config.face}: --segment {seg[0]}:{seg[1]}"
    if not 0 <= start < end:
        raise InputError(f"{where} is outside the run's {n_out} output frames (0:{n_out})")
    if config.mode == "uhq" and config.refine.temporal_blend > 0:
        raise InputError(f"{where}: uhq with --temporal-blend carries each refinement into the next frame, "
                         "so a segment cannot start mid-run; use --temporal-blend 0 or run it whole")
    if info.is_image or not info.frame_count or end > info.frame_count:
        return Span(start, end)  # into the loops: any source frame may be needed, track them all
    after = stream.lookahead
    before = max(2 * getattr(stream, "_box_lookahead", after), after)  # centred windows look back 2x as far
    batch = config.faces.batch_size
    return Span(start, end, max(0, start - before) // batch * batch, end + after)


def tracked_frames(
    frames: FaceFrames, tracking: FaceTracking, span: Span | None = None
) -> Iterator[tuple[np.ndarray, list[FaceGeometry], int, int]]:
    """Decode -> track: (frame, every face's geometry, output index, source index) in output order,
    for the output frames of ``span`` (default: all); frames tracked only as context are dropped."""
    span = span or Span(0, frames.n_out)
    off = tracking.offset = span.track_from
    pending: dict[int, np.ndarray] = {}
    batch: list[np.ndarray] = []
    for j, frame in enumerate(frames.first_pass(), frames.start):
        if span.track_to is not None and j >= span.track_to:
            break
        if j < off:
            continue  # before the segment's context (where the decode could not seek): not tracked
        pending[j] = frame
        batch.append(frame)
        if len(batch) >= tracking.batch_size:
            tracking.add(batch)
            batch = []
            yield from _in_span(tracking.ready(), pending, span)
    if batch:
        tracking.add(batch)
    yield from _in_span(tracking.ready(end=True), pending, span)
    if span.track_to is not None and frames.count < span.end:
        raise InputError(f"{frames.config.face}: the video has {frames.count} frames, fewer than its header "
                         f"says; run it whole instead of --segment")
    tracking.finish(frames.count, whole=span.tracks_all)
    if span.track_to is not None:
        return  # the segment ends inside the first pass
    for i, j, frame in frames.loops():
        if i >= span.end:
            break
        if i >= span.start:
            yield frame, tracking.geometries(j), i, j


def _in_span(ready, pending: dict[int, np.ndarray], span: Span):
    for k, geo in ready:
        j = k + span.track_from
        frame = pending.pop(j)
        if span.start <= j < span.end:
            yield frame, geo, j, j


def _check_box(config: RunConfig, width: int, height: int) -> None:
    """A fixed ``--box`` must lie inside the (preprocessed) frame: one line, not OpenCV's assertion."""
    box = config.faces.box
    if box is None:
        return
    top, bottom, left, right = box
    if bottom > height or right > width:
        raise InputError(f"{config.face}: --box {' '.join(map(str, box))} (top bottom left right) is outside the "
                         f"{width}x{height} frame (after --resize-factor, --crop and --rotate)")
