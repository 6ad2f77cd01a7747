"""The lip-sync pipeline: one API behind the CLI, the WebUI tab, the app and the tests.

One streaming pass: decode -> (detect, batched | cached) -> track + smooth with a short
look-ahead -> generator, batched -> composite -> encode. Memory is bounded by the batch
sizes, not by the video length. A video shorter than the audio loops; its frames are kept
in memory for the next loops when small, otherwise decoded again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from . import audio as audio_mod
from .cache import DetectionCache, default_cache_dir, file_digest
from .checkpoints import resolve_checkpoint
from .compositing import make_compositor
from .config import FrameOptions, RunConfig
from .errors import Cancelled, InputError, NoFaceError, OutputError
from .faces import create_detector, pad_boxes, select_track, smooth_track
from .video import VideoWriter, iter_frames, probe, read_audio_track, unique_output_path

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
LOOP_CACHE_BYTES = 768 * 1024 * 1024  # keep a looping clip's frames in RAM up to this size


@dataclass
class RunResult:
    output: Path
    frames: int
    frames_without_face: int
    fps: float
    detection_cached: bool
    timings: dict[str, float] = field(default_factory=dict)


def resolve_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


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


def loop_index(i: int, n_frames: int, mode: str) -> int:
    """Input frame used for output frame ``i`` when the video is shorter than the audio."""
    if mode == "pingpong" and n_frames > 1:
        period = 2 * n_frames - 2
        p = i % period
        return p if p < n_frames else period - p
    return i % n_frames


def _threaded(iterator: Iterator, maxsize: int = 8) -> Iterator:
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
        except BaseException as exc:  # handed to the consumer
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


class _Track:
    """Streaming face track: raw detections in, final (padded, smoothed) integer boxes out,
    each frame's box final once ``lookahead`` later frames are known."""

    def __init__(self, config: RunConfig, width: int, height: int) -> None:
        f = config.faces
        self.fixed = f.box is not None
        self.pads, self.smoothing, self.face_index = f.pads, f.smoothing, f.face_index
        self.width, self.height = width, height
        self.lookahead = {"upstream": 4, "centered": 2, "none": 0}[f.smoothing] if not self.fixed else 0
        self.raw: list[np.ndarray] = []  # detections per frame (K, 5)
        self.padded = np.zeros((0, 4), np.float32)
        self.final: list[np.ndarray] = []

    def add(self, detections: list[np.ndarray]) -> None:
        start = len(self.raw)
        self.raw.extend(detections)
        if self.fixed:
            boxes = np.stack([d[0, :4] for d in detections]).astype(np.float32)
            boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, self.width)
            boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, self.height)
            self.padded = np.concatenate([self.padded, boxes])
            return
        # Selection is causal: re-run it on the new frames seeded with the last chosen box.
        seed = [] if start == 0 else [self._seed()]
        track = select_track(seed + list(detections), self.face_index)[len(seed) :]
        self.padded = np.concatenate([self.padded, pad_boxes(track, self.pads, self.width, self.height)])

    def _seed(self) -> np.ndarray:
        last = self.padded[-1]
        if np.isnan(last[0]):
            return np.zeros((0, 5), np.float32)
        # undo the pads approximately: only used to follow the same face by overlap
        t, b, l, r = self.pads
        return np.array([[last[0] + l, last[1] + t, last[2] - r, last[3] - b, 1.0]], np.float32)

    def ready(self, end: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """(frame index, box) for every frame that became final."""
        n = len(self.padded)
        limit = n if end else n - self.lookahead
        while len(self.final) < limit:
            j = len(self.final)
            if self.fixed or self.lookahead == 0:
                box = self.padded[j] if self.fixed else smooth_track(self.padded[j : j + 1], "none")[0]
            else:
                lo = max(0, j - 2 * self.lookahead)
                hi = min(n, j + self.lookahead + 1)
                box = smooth_track(self.padded[lo:hi], self.smoothing)[j - lo]
            self.final.append(box)
            yield j, box

    def box_for(self, j: int) -> np.ndarray:
        return self.final[j]


class LipSyncPipeline:
    """Holds loaded models between runs (the UI reuses one instance)."""

    def __init__(self, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self._generators: dict[tuple[str, float, str], object] = {}
        self._detectors: dict[tuple, object] = {}

    def load_generator(self, path: Path, device: str):
        import torch

        from .models import load_model
        from .models.optimize import fold_batchnorm

        key = (str(Path(path).resolve()), Path(path).stat().st_mtime, device)
        if key not in self._generators:
            self._generators.clear()
            model = fold_batchnorm(load_model(path, device=device, kind="wav2lip"))
            if device.startswith("cuda"):
                model.half()
            else:
                model.to(memory_format=torch.channels_last)  # faster CPU convolutions (oneDNN)
            self._generators[key] = model
            torch.set_grad_enabled(False)
        return self._generators[key]

    def _detector(self, config: RunConfig, device: str):
        f = config.faces
        if f.box is not None:
            return create_detector("box", box=f.box)
        max_size = f.detect_max_size or None
        key = (f.detector, max_size, device, str(f.s3fd_path), f.batch_size)
        if key not in self._detectors:
            if f.detector == "s3fd":
                # S3FD weights live in the models folder like every other model (fetched once).
                path = f.s3fd_path or resolve_checkpoint("s3fd", config.models_dir, config.allow_download)
                det = create_detector(
                    "s3fd", device=device, model_path=path, batch_size=f.batch_size, max_size=max_size
                )
            else:
                det = create_detector(f.detector, max_size=max_size)
            self._detectors.clear()
            self._detectors[key] = det
        return self._detectors[key]

    # -- the run ------------------------------------------------------------------------
    def run(
        self,
        config: RunConfig,
        progress: ProgressFn | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> RunResult:
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        report = progress or (lambda stage, done, total: None)
        cancelled = cancel or (lambda: False)
        device = resolve_device(config.device) if config.device != "auto" else self.device

        out = _output_path(config)

        report("reading audio", 0, 1)
        track_audio = read_audio_track(config.audio)
        wav = audio_mod.check_speech(track_audio.mono(audio_mod.SAMPLE_RATE), config.audio)
        info = probe(config.face)
        fps = float(config.frames.fps) if info.is_image else info.fps
        if not fps or fps <= 0:
            raise InputError(f"{config.face}: the video has no usable frame rate")
        mel = audio_mod.melspectrogram(wav)
        windows = audio_mod.mel_windows(mel, fps)
        if config.mode != "fast":
            # Upstream stops one window short of the audio's end; hold the last window so the
            # video covers the whole audio (fast mode keeps upstream's frame count exactly).
            cover = int(np.ceil(len(wav) / audio_mod.SAMPLE_RATE * fps - 1e-6))
            if cover > len(windows):
                windows = np.concatenate([windows, np.repeat(windows[-1:], cover - len(windows), axis=0)])
        n_out = len(windows)
        timings["audio"] = time.perf_counter() - t_start

        report("loading model", 0, 1)
        ckpt = resolve_checkpoint(config.checkpoint, config.models_dir, config.allow_download)
        model = self.load_generator(ckpt, device)
        img_size = model.img_size
        dtype = next(model.parameters()).dtype
        detector = self._detector(config, device)
        compositor = make_compositor(config.mode)

        # Detection cache: keyed by the face file's content and everything that changes detections.
        cache = DetectionCache(config.cache_dir or default_cache_dir())
        cache_key = None
        cached = None
        if config.faces.box is None:
            fo = config.frames
            settings = {
                **detector.settings(),
                "resize": fo.resize_factor,
                "rotate": fo.rotate,
                "crop": list(fo.crop),
            }
            cache_key = cache.key(file_digest(config.face), settings)
            need = 1 if info.is_image else min(n_out, info.frame_count or n_out)
            cached = cache.load(cache_key, need)
            if cached is not None:
                log.info("face detections loaded from the cache")

        frame_rate = info.frame_rate if not info.is_image else _fraction(fps)
        first = preprocess_frame(next(iter_frames(config.face, limit=1)), config.frames)
        height, width = first.shape[:2]
        tracker = _Track(config, width, height)
        writer = VideoWriter(out, width, height, frame_rate, track_audio, config.encode)

        stats = {"no_face": 0, "written": 0}
        t_loop = time.perf_counter()
        try:
            batch: list[tuple[np.ndarray, np.ndarray | None, int]] = []  # frame, box, output index
            n_faces_in_batch = 0

            def flush():
                nonlocal batch, n_faces_in_batch
                if cancelled():
                    raise Cancelled("cancelled")
                faces = [(k, b) for k, (_, b, _) in enumerate(batch) if b is not None]
                if faces:
                    crops = np.stack(
                        [
                            cv2.resize(
                                batch[k][0][int(b[1]) : int(b[3]), int(b[0]) : int(b[2])],
                                (img_size, img_size),
                            )
                            for k, b in faces
                        ]
                    )
                    mels = np.stack([windows[batch[k][2]] for k, _ in faces])
                    generated = _generate(model, crops, mels, device, dtype)
                    for (k, b), gen in zip(faces, generated):
                        frame = batch[k][0]
                        compositor(frame, gen, tuple(int(v) for v in b))
                for frame, _, _ in batch:
                    writer.write(frame)
                    stats["written"] += 1
                report("lip-sync", stats["written"], n_out)
                batch = []
                n_faces_in_batch = 0

            def emit(frame: np.ndarray, box: np.ndarray, i: int):
                nonlocal n_faces_in_batch
                valid = not np.isnan(box[0]) and box[2] - box[0] >= 2 and box[3] - box[1] >= 2
                if not valid:
                    stats["no_face"] += 1
                batch.append((frame, box if valid else None, i))
                n_faces_in_batch += valid
                if len(batch) >= config.batch_size:
                    flush()

            # First pass over the input frames (detecting unless cached).
            limit = n_out  # never decode frames past the audio's end
            source = (preprocess_frame(f, config.frames) for f in iter_frames(config.face, limit=limit))
            pending: dict[int, np.ndarray] = {}
            # Frames are kept for later loops only when the audio outlasts the video.
            loops = info.is_image or not info.frame_count or info.frame_count < n_out
            keep_frames: list[np.ndarray] | None = [] if loops else None
            kept_bytes = 0
            det_batch: list[np.ndarray] = []
            n_in = 0

            def run_detection(frames_rgb):
                if cached is not None:
                    start = len(tracker.raw)
                    return cached[start : start + len(frames_rgb)]
                return detector.detect([np.ascontiguousarray(f) for f in frames_rgb])

            for frame in _threaded(source):
                if frame.shape[:2] != (height, width):
                    raise InputError(
                        f"{config.face}: frame {n_in} changes size ({frame.shape[1]}x{frame.shape[0]})"
                    )
                pending[n_in] = frame
                if keep_frames is not None:
                    kept_bytes += frame.nbytes
                    keep_frames.append(frame)
                    if kept_bytes > LOOP_CACHE_BYTES:
                        keep_frames = None  # too large: later loops decode again
                det_batch.append(frame)
                n_in += 1
                if len(det_batch) >= config.faces.batch_size:
                    tracker.add(run_detection([f[:, :, ::-1] for f in det_batch]))
                    det_batch = []
                    for j, box in tracker.ready():
                        emit(pending.pop(j).copy() if keep_frames is not None else pending.pop(j), box, j)
            if det_batch:
                tracker.add(run_detection([f[:, :, ::-1] for f in det_batch]))
            for j, box in tracker.ready(end=True):
                emit(pending.pop(j).copy() if keep_frames is not None else pending.pop(j), box, j)
            n_frames = n_in
            if n_frames == 0:
                raise InputError(f"{config.face}: no frame could be decoded")
            if all(np.isnan(b[0]) for b in tracker.final):
                raise NoFaceError(
                    f"{config.face}: no face found in any of its {n_frames} frames "
                    "(try --detector s3fd/dlib, --resize-factor, or a fixed --box)"
                )
            if cached is None and cache_key is not None:
                cache.save(cache_key, tracker.raw)

            # Later loops when the audio is longer than the video.
            if n_out > n_frames:
                loop_mode = config.frames.loop
                if keep_frames is None:
                    log.info("video too large to keep in memory for looping; decoding it again per loop")
                    if loop_mode == "pingpong":
                        log.warning("ping-pong looping needs the frames in memory; looping forward instead")
                        loop_mode = "forward"
                i = n_frames
                while i < n_out:
                    j = loop_index(i, n_frames, loop_mode)
                    if keep_frames is not None:
                        emit(keep_frames[j].copy(), tracker.box_for(j), i)
                        i += 1
                    else:
                        # a forward loop starts again at frame 0: decode the video once more
                        for jj, frame in enumerate(
                            _threaded(preprocess_frame(f, config.frames) for f in iter_frames(config.face))
                        ):
                            if i >= n_out:
                                break
                            if jj != loop_index(i, n_frames, loop_mode):
                                continue
                            emit(frame, tracker.box_for(jj), i)
                            i += 1
            if batch:
                flush()
            timings["lipsync"] = time.perf_counter() - t_loop
            report("encoding", n_out, n_out)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        timings["total"] = time.perf_counter() - t_start
        if stats["no_face"]:
            log.warning("%d of %d frames had no face and were left unchanged", stats["no_face"], n_out)
        return RunResult(out, n_out, stats["no_face"], fps, cached is not None, timings)


def _fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def _generate(model, crops: np.ndarray, mels: np.ndarray, device: str, dtype) -> np.ndarray:
    """Upstream's pre/post-processing: lower half zeroed, 6 channels /255, x255 then uint8 truncation."""
    import torch

    with torch.inference_mode():
        faces = torch.from_numpy(crops).to(device)
        masked = faces.clone()
        masked[:, faces.shape[1] // 2 :] = 0
        # NHWC storage viewed as NCHW is channels_last: what the optimised CPU model wants.
        x = torch.cat([masked, faces], dim=3).permute(0, 3, 1, 2).float() / 255.0
        mel = torch.from_numpy(np.ascontiguousarray(mels)).to(device).unsqueeze(1).float()
        pred = model(mel.to(dtype), x.to(dtype)).float()
        pred = (pred.permute(0, 2, 3, 1) * 255.0).to(torch.uint8)
    return pred.cpu().numpy()


def _output_path(config: RunConfig) -> Path:
    out = config.out
    if out is None:
        suffix = ".mkv" if config.encode.lossless else ".mp4"
        out = unique_output_path(config.face, config.audio, Path(config.results_dir), suffix)
    out = Path(out)
    if out.suffix == "":
        raise OutputError(f"{out}: the output needs a file extension (.mp4, .mkv, .mov)")
    if config.encode.lossless and out.suffix.lower() != ".mkv":
        raise OutputError(f"{out}: lossless output is written as Matroska; use a .mkv name")
    for src in (config.face, config.audio):
        if src.exists() and out.exists() and out.resolve() == src.resolve():
            raise OutputError(f"{out}: refusing to overwrite an input file")
    if not out.parent.exists():
        raise OutputError(f"{out.parent}: output folder does not exist")
    return out


def run(
    config: RunConfig, progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None
) -> RunResult:
    """Lip-sync ``config.face`` to ``config.audio`` (a fresh pipeline; models not kept)."""
    return LipSyncPipeline(config.device).run(config, progress, cancel)
