"""The lip-sync pipeline: one API behind the CLI, the WebUI tab, the app and the tests.

One streaming pass: decode -> (detect + landmarks, batched | cached) -> track + smooth with a
short look-ahead -> generator, batched -> (super-resolution) -> composite -> (restoration)
-> encode. Memory is bounded by the batch sizes, not by the video length. A video shorter
than the audio loops; its frames are kept in memory for the next loops when small,
otherwise decoded again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import audio as audio_mod
from .cache import DetectionCache, LandmarkCache, default_cache_dir, file_digest
from .checkpoints import resolve_checkpoint
from .compositing import BlendOptions, Placement, extract_crop, eye_angle, make_compositor
from .config import FrameOptions, RunConfig
from .errors import Cancelled, InputError, NoFaceError, OutputError, Wav2LipUHQError
from .faces import create_detector
from .faces.landmarks import create_landmark_detector
from .faces.stream import FaceGeometry, FaceTrackStream
from .faces.track import valid_runs
from .masks import MaskOptions
from .video import VideoWriter, iter_frames, probe, read_audio_track, unique_output_path

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
LOOP_CACHE_BYTES = 768 * 1024 * 1024  # keep a looping clip's frames in RAM up to this size
# A generator batch also ends at this many bytes of frames: two batches are held at once (one
# being generated, one composited), so large frames (1080p, 4K) get smaller batches and peak
# memory stays the same at any resolution.
BATCH_FRAME_BYTES = 96 * 1024 * 1024
SILENT_MEL = np.full((80, audio_mod.MEL_STEP), -audio_mod.MAX_ABS, np.float32)  # the mel of digital silence


@dataclass
class RunResult:
    output: Path
    frames: int
    frames_without_face: int
    fps: float
    detection_cached: bool
    silent_frames: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _GeneratorJob:
    """A batch whose generator call is running in the worker thread."""

    batch: list
    work: list[int]
    placements: dict
    future: Future | None


def resolve_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bfloat16 dot products (AVX512-BF16, AMX): bf16 convolutions run ~3x
    faster there than fp32; elsewhere bf16 is emulated and slower."""
    import torch

    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        if probe is not None and not probe():
            return False
    except RuntimeError:
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str, mode: str) -> str:
    """``auto``: fp16 on CUDA; on CPU bf16 where it is native, except in ``fast`` mode, which
    must reproduce upstream's fp32 frames."""
    if precision != "auto":
        if precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"unknown precision {precision!r} (auto, fp32, fp16, bf16)")
        return precision
    if device.startswith("cuda"):
        return "fp16"
    if device == "cpu" and mode != "fast" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


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


def silent_frames(
    wav: np.ndarray, n_frames: int, fps: float, relative_db: float = -35.0, min_run: int = 3
) -> np.ndarray:
    """Boolean per output frame: the audio under it is silent (voice-activity gate).

    A frame is silent when its RMS is ``relative_db`` below the clip's speech level (95th
    percentile of frame levels) or under -60 dBFS; runs shorter than ``min_run`` frames
    (gaps between words) do not count, so the mouth does not flutter.
    """
    sr = audio_mod.SAMPLE_RATE
    edges = (np.arange(n_frames + 1) * sr / fps).astype(np.int64)
    levels = np.empty(n_frames)
    for i in range(n_frames):
        chunk = wav[edges[i] : max(edges[i + 1], edges[i] + 1)]
        rms = np.sqrt(np.mean(chunk.astype(np.float64) ** 2)) if chunk.size else 0.0
        levels[i] = 20 * np.log10(max(rms, 1e-6))
    speech = np.percentile(levels, 95)
    silent = (levels < speech + relative_db) | (levels < -60.0)
    out = np.zeros(n_frames, bool)
    for i, j in valid_runs(silent):
        if j - i >= min_run:
            out[i:j] = True
    return out


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


def draw_debug(frame: np.ndarray, placement: Placement | None, alpha: np.ndarray | None) -> np.ndarray:
    """The frame with the mask tinted red, landmarks in green and the generator box in blue."""
    vis = frame.copy()
    if placement is None:
        return vis
    if alpha is not None:
        x1, y1, x2, y2 = placement.roi
        region = vis[y1:y2, x1:x2].astype(np.float32)
        region[..., 2] = region[..., 2] * (1 - 0.6 * alpha) + 255 * 0.6 * alpha
        vis[y1:y2, x1:x2] = region.astype(np.uint8)
    x1, y1, x2, y2 = placement.box
    cv2.rectangle(vis, (x1, y1), (x2 - 1, y2 - 1), (255, 0, 0), 1)
    if placement.landmarks is not None:
        for x, y in placement.landmarks:
            cv2.circle(vis, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1)
    return vis


class LipSyncPipeline:
    """Holds loaded models between runs (the UI reuses one instance)."""

    def __init__(
        self, device: str = "auto", refiner_factory: Callable[[Any, str], Any] | None = None
    ) -> None:
        """``refiner_factory(refine_options, device)`` replaces the diffusers refiner for ``uhq``
        (the WebUI passes one that refines with its own loaded SD model)."""
        self.device = resolve_device(device)
        self.refiner_factory = refiner_factory
        self._models: dict[tuple, object] = {}
        self._models_lock = threading.Lock()  # the generator may load in a background thread

    def _cached(self, key: tuple, build: Callable[[], object]):
        """One loaded instance per kind of model; a new file or setting replaces the old one."""
        kind = key[0]
        with self._models_lock:
            for k in [k for k in self._models if k[0] == kind and k != key]:
                del self._models[k]
            if key in self._models:
                return self._models[key]
        model = build()
        with self._models_lock:
            return self._models.setdefault(key, model)

    def _preload_generator(self, config: RunConfig, device: str) -> Future | None:
        """Start loading a local generator checkpoint in the background (it overlaps audio decoding
        and the landmark model's loading); None when it must be downloaded first or is bad: then
        the normal path loads it and reports any problem in order."""
        try:
            path = resolve_checkpoint(config.checkpoint, config.models_dir, allow_download=False)
        except Exception:  # noqa: BLE001 - missing or not yet downloaded: the main path says why
            return None
        loader = ThreadPoolExecutor(1, thread_name_prefix="wav2lip-uhq-load")
        future = loader.submit(
            self.load_generator, path, device, resolve_precision(config.precision, device, config.mode)
        )
        loader.shutdown(wait=False)  # the thread ends when the load does
        return future

    def _configured_generator(self, config: RunConfig, device: str):
        """The generator ``config`` asks for (downloaded first if allowed and missing)."""
        ckpt = resolve_checkpoint(config.checkpoint, config.models_dir, config.allow_download)
        return self.load_generator(ckpt, device, resolve_precision(config.precision, device, config.mode))

    def load_generator(self, path: Path, device: str, precision: str = "fp32"):
        import torch

        from .models import load_model
        from .models.optimize import fold_batchnorm

        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]

        def build():
            model = fold_batchnorm(load_model(path, device=device, kind="wav2lip")).to(dtype)
            if device == "cpu":
                model.to(memory_format=torch.channels_last)  # faster CPU convolutions (oneDNN)
            return model

        key = ("generator", str(Path(path).resolve()), Path(path).stat().st_mtime, device, precision)
        return self._cached(key, build)

    def _detector(self, config: RunConfig, device: str):
        f = config.faces
        if f.box is not None:
            return create_detector("box", box=f.box)
        max_size = f.detect_max_size or None
        if f.detector == "s3fd":
            # S3FD weights live in the models folder like every other model (fetched once).
            path = f.s3fd_path or resolve_checkpoint("s3fd", config.models_dir, config.allow_download)
            key = ("detector", "s3fd", str(path), max_size, device, f.batch_size)
            return self._cached(
                key,
                lambda: create_detector(
                    "s3fd", device=device, model_path=path, batch_size=f.batch_size, max_size=max_size
                ),
            )
        return self._cached(
            ("detector", f.detector, max_size), lambda: create_detector(f.detector, max_size=max_size)
        )

    def _landmarks(self, config: RunConfig, device: str):
        if config.mode not in ("improved", "enhanced", "uhq") and not config.composite.aligned:
            return None
        name = config.composite.landmarks
        if name == "auto":  # dlib needs no download; FAN goes with S3FD detection
            name = "dlib" if config.faces.detector == "dlib" or config.faces.box is not None else "fan"
        path = None
        if name == "fan":
            path = config.composite.fan_path or resolve_checkpoint(
                "fan", config.models_dir, config.allow_download
            )
        return self._cached(
            ("landmarks", name, str(path), device),
            lambda: create_landmark_detector(name, device=device, model_path=path),
        )

    def _parser(self, config: RunConfig, device: str):
        path = config.composite.parser
        if path is None or config.mode not in ("improved", "enhanced", "uhq"):
            return None
        from .parsing import FaceParser

        return self._cached(("parser", str(path), device), lambda: FaceParser.from_file(path, device=device))

    def _restorer(self, config: RunConfig, device: str):
        if config.mode != "enhanced":
            return None, None
        from .restoration import FaceRestorer, Upscaler

        c = config.composite
        path = c.restorer or resolve_checkpoint("gfpgan", config.models_dir, config.allow_download)
        restorer = self._cached(
            ("restorer", str(path), device, c.fidelity),
            lambda: FaceRestorer.from_file(path, device=device, fidelity=c.fidelity),
        )
        upscaler = None
        if c.upscaler is not None:
            upscaler = self._cached(
                ("upscaler", str(c.upscaler), device), lambda: Upscaler.from_file(c.upscaler, device=device)
            )
        return restorer, upscaler

    def _refiner(self, config: RunConfig, device: str):
        """Mode "uhq": the diffusers refiner (SD checkpoint + ControlNets), kept between runs."""
        if config.mode != "uhq":
            return None
        r = config.refine
        if self.refiner_factory is not None:  # the host's model: nothing to load or cache here
            return self.refiner_factory(r, device)
        from .refine import create_refiner

        files = (
            [r.checkpoint] + [c.model for c in r.controlnets] + [p for p, _ in r.loras] + list(r.embeddings)
        )
        stamp = tuple(Path(f).stat().st_mtime if f is not None and Path(f).exists() else None for f in files)
        key = ("refiner", repr(r), stamp, device)
        return self._cached(key, lambda: create_refiner(r, device))

    # -- one frame, for the UI ----------------------------------------------------------------
    def preview(self, config: RunConfig, frame_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(result, debug overlay) for one frame of the face input, BGR: to tune settings fast."""
        info = probe(config.face)
        fps = float(config.frames.fps) if info.is_image else info.fps
        track_audio = read_audio_track(config.audio)
        wav = audio_mod.check_speech(track_audio.mono(audio_mod.SAMPLE_RATE), config.audio)
        windows = audio_mod.mel_windows(audio_mod.melspectrogram(wav), fps)
        frame_index = max(0, min(frame_index, len(windows) - 1))
        src_index = 0 if info.is_image else frame_index
        frame = None
        for k, f in enumerate(iter_frames(config.face, limit=src_index + 1)):
            frame = f
        if frame is None:
            raise InputError(f"{config.face}: no frame could be decoded")
        frame = preprocess_frame(frame, config.frames)
        device = resolve_device(config.device) if config.device != "auto" else self.device
        model = self._configured_generator(config, device)
        track = self._make_track(config, device, frame.shape[1], frame.shape[0])
        rgb = np.ascontiguousarray(frame[:, :, ::-1])
        track.add(self._detector(config, device).detect([rgb]), [frame])
        geo = next(track.ready(end=True))[1]
        if not geo.valid:
            raise NoFaceError(f"{config.face}: no face in frame {src_index}")
        compositor = make_compositor(_composite_mode(config.mode), _blend_options(config))
        placement = _placement(geo, model.img_size, frame_index, config.composite.aligned)
        crop = extract_crop(frame, placement)
        generated = _generate(
            model, crop[None], windows[frame_index][None], device, next(model.parameters()).dtype
        )[0]
        result = frame.copy()
        alpha = compositor(result, generated, placement)
        return result, draw_debug(frame, placement, alpha)

    def _make_track(self, config: RunConfig, device: str, width: int, height: int) -> FaceTrackStream:
        f = config.faces
        return FaceTrackStream(
            width,
            height,
            f.pads,
            f.smoothing,
            f.face_index,
            fixed=f.box is not None,
            landmarks=self._landmarks(config, device),
            landmark_smoothing=config.composite.landmark_smoothing,
        )

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
        comp = config.composite

        out = _output_path(config)
        preloaded = self._preload_generator(config, device)

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
        silent = np.zeros(n_out, bool)
        if comp.silence != "off":
            silent = silent_frames(wav, n_out, fps, comp.silence_db)
            if comp.silence == "close":
                windows = np.array(windows)  # writable copy
                windows[silent] = SILENT_MEL
        timings["audio"] = time.perf_counter() - t_start

        report("loading models", 0, 1)
        model = preloaded.result() if preloaded is not None else self._configured_generator(config, device)
        img_size = model.img_size
        dtype = next(model.parameters()).dtype
        detector = self._detector(config, device)
        restorer, upscaler = self._restorer(config, device)
        parser = self._parser(config, device)
        compositor = make_compositor(_composite_mode(config.mode), _blend_options(config))
        refiner = None
        if config.mode == "uhq":
            from .refine import RefineSession

            refiner = RefineSession(self._refiner(config, device), self._landmarks(config, device))

        frame_rate = info.frame_rate if not info.is_image else _fraction(fps)
        first = preprocess_frame(next(iter_frames(config.face, limit=1)), config.frames)
        height, width = first.shape[:2]
        tracker = self._make_track(config, device, width, height)

        # Caches: keyed by the face file's content and everything that changes the result.
        cache_dir = config.cache_dir or default_cache_dir()
        det_cache, lm_cache = DetectionCache(cache_dir), LandmarkCache(cache_dir)
        det_key = lm_key = None
        cached_dets = cached_lms = None
        need = 1 if info.is_image else min(n_out, info.frame_count or n_out)
        if config.faces.box is None or tracker.landmark_detector is not None:
            fo = config.frames
            digest = file_digest(config.face)
            settings = {
                **detector.settings(),
                "resize": fo.resize_factor,
                "rotate": fo.rotate,
                "crop": list(fo.crop),
            }
            if config.faces.box is None:
                det_key = det_cache.key(digest, settings)
                cached_dets = det_cache.load(det_key, need)
            if tracker.landmark_detector is not None:
                lm_key = lm_cache.key(
                    digest,
                    {
                        **settings,
                        **tracker.landmark_detector.settings(),
                        "face_index": config.faces.face_index,
                        "pads": list(config.faces.pads),
                    },
                )
                cached_lms = lm_cache.load(lm_key, need)
        if cached_dets is not None:
            log.info("face detections loaded from the cache")

        writer = VideoWriter(out, width, height, frame_rate, track_audio, config.encode)
        debug_writer = None
        if comp.debug_video is not None:
            debug_writer = VideoWriter(
                Path(comp.debug_video), width * 2, height, frame_rate, track_audio, config.encode
            )

        stats = {"no_face": 0, "written": 0}
        t_loop = time.perf_counter()
        # The generator runs one batch ahead in a worker thread: while it computes batch N+1,
        # this thread composites and writes batch N and tracks the next frames (two cores busy
        # instead of one waiting on the other).
        gen_pool = ThreadPoolExecutor(1, thread_name_prefix="wav2lip-uhq-generator")
        try:
            batch: list[tuple[np.ndarray, FaceGeometry, int]] = []  # frame, geometry, output index
            in_flight: list[_GeneratorJob] = []

            def submit():
                nonlocal batch
                if cancelled():
                    raise Cancelled("cancelled")
                work = [
                    k
                    for k, (_, g, i) in enumerate(batch)
                    if g.valid and not (silent[i] and comp.silence == "keep")
                ]
                placements = {k: _placement(batch[k][1], img_size, batch[k][2], comp.aligned) for k in work}
                future = None
                if work:
                    crops = np.stack([extract_crop(batch[k][0], placements[k]) for k in work])
                    mels = np.stack([windows[batch[k][2]] for k in work])
                    future = gen_pool.submit(_generate, model, crops, mels, device, dtype)
                in_flight.append(_GeneratorJob(batch, work, placements, future))
                batch = []
                while len(in_flight) > 1:
                    finish(in_flight.pop(0))

            def finish(job: _GeneratorJob):
                batch, work, placements = job.batch, job.work, job.placements
                alphas: dict[int, np.ndarray | None] = {}
                originals = {k: batch[k][0].copy() for k in work} if debug_writer is not None else {}
                if work:
                    generated = job.future.result()
                    if cancelled():
                        raise Cancelled("cancelled")
                    if upscaler is not None:
                        generated = np.stack(upscaler.upscale(list(generated)))
                    visible: dict[int, np.ndarray | None] = {}
                    if parser is not None:  # one batched parsing call for the batch's face regions
                        from .parsing import KEEP, parsing_masks_for_rois

                        keep = KEEP + ((14,) if comp.parser_keep_neck else ())
                        size = generated.shape[1]
                        rois = [
                            compositor.roi(batch[k][0].shape, size, placements[k].scaled(size // img_size))[0]
                            for k in work
                        ]
                        masks = parsing_masks_for_rois([batch[k][0] for k in work], rois, parser, keep=keep)
                        visible = dict(zip(work, masks))
                    for k, gen in zip(work, generated):
                        if parser is not None:
                            alphas[k] = compositor(batch[k][0], gen, placements[k], visible.get(k))
                        else:
                            alphas[k] = compositor(batch[k][0], gen, placements[k])
                    if restorer is not None:
                        from .restoration import restore_regions

                        done = [k for k in work if alphas[k] is not None]
                        restore_regions(
                            [batch[k][0] for k in done],
                            [placements[k].roi for k in done],
                            [alphas[k] for k in done],
                            restorer,
                            comp.restore_strength,
                        )
                    if refiner is not None:  # one batched diffusion call for the batch's mouth crops
                        from .refine import FrameJob

                        jobs = [
                            FrameJob(
                                batch[k][0],
                                alphas[k],
                                placements[k].roi,
                                placements[k].landmarks,
                                batch[k][2],
                            )
                            for k in work
                            if alphas[k] is not None
                        ]
                        start = stats["written"]
                        refiner.refine(
                            jobs,
                            [placements[k].box for k in work if alphas[k] is not None],
                            lambda d, t: report("refining", start + round(d * len(batch) / max(t, 1)), n_out),
                            cancelled,
                        )
                for k, (frame, _, _) in enumerate(batch):
                    writer.write(frame)
                    if debug_writer is not None:
                        base = originals.get(k, frame)
                        debug = draw_debug(base, placements.get(k), alphas.get(k))
                        debug_writer.write(np.concatenate([frame, debug], axis=1))
                    stats["written"] += 1
                report("lip-sync", stats["written"], n_out)

            def emit(frame: np.ndarray, geo: FaceGeometry, i: int):
                if not geo.valid:
                    stats["no_face"] += 1
                batch.append((frame, geo, i))
                if len(batch) >= config.batch_size or len(batch) * frame.nbytes >= BATCH_FRAME_BYTES:
                    submit()

            # First pass over the input frames (detecting unless cached).
            source = (preprocess_frame(f, config.frames) for f in iter_frames(config.face, limit=n_out))
            pending: dict[int, np.ndarray] = {}
            # Frames are kept for later loops only when the audio outlasts the video.
            loops = info.is_image or not info.frame_count or info.frame_count < n_out
            keep_frames: list[np.ndarray] | None = [] if loops else None
            kept_bytes = 0
            det_batch: list[np.ndarray] = []
            n_in = 0

            def track_batch(frames_bgr: list[np.ndarray]):
                start = len(tracker.raw)
                if cached_dets is not None:
                    dets = cached_dets[start : start + len(frames_bgr)]
                elif config.faces.box is not None:
                    dets = detector.detect(frames_bgr)  # a fixed box reads no pixels
                else:
                    dets = detector.detect([np.ascontiguousarray(f[:, :, ::-1]) for f in frames_bgr])
                lms = cached_lms[start : start + len(frames_bgr)] if cached_lms is not None else None
                tracker.add(dets, frames_bgr, lms)

            def drain(end: bool = False):
                for j, geo in tracker.ready(end):
                    frame = pending.pop(j)
                    emit(frame.copy() if keep_frames is not None else frame, geo, j)

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
                    track_batch(det_batch)
                    det_batch = []
                    drain()
            if det_batch:
                track_batch(det_batch)
            drain(end=True)
            n_frames = n_in
            if n_frames == 0:
                raise InputError(f"{config.face}: no frame could be decoded")
            if not any(g.valid for g in tracker.final):
                raise NoFaceError(
                    f"{config.face}: no face found in any of its {n_frames} frames "
                    "(try --detector s3fd/dlib, --resize-factor, or a fixed --box)"
                )
            if cached_dets is None and det_key is not None:
                det_cache.save(det_key, tracker.raw)
            if cached_lms is None and lm_key is not None:
                lm_cache.save(lm_key, tracker.raw_landmarks)

            # Later loops when the audio is longer than the video.
            if n_out > n_frames:
                loop_mode = config.frames.loop
                if keep_frames is None and loop_mode == "pingpong":
                    log.warning(
                        "ping-pong looping needs the frames in memory; this video is too large, looping forward"
                    )
                    loop_mode = "forward"
                i = n_frames
                while i < n_out:
                    if keep_frames is not None:
                        j = loop_index(i, n_frames, loop_mode)
                        emit(keep_frames[j].copy(), tracker.geometry(j), i)
                        i += 1
                        continue
                    # a forward loop starts again at frame 0: decode the video once more
                    for jj, frame in enumerate(
                        _threaded(preprocess_frame(f, config.frames) for f in iter_frames(config.face))
                    ):
                        if i >= n_out:
                            break
                        emit(frame, tracker.geometry(jj), i)
                        i += 1
            if batch:
                submit()
            while in_flight:
                finish(in_flight.pop(0))
            timings["lipsync"] = time.perf_counter() - t_loop
            report("encoding", n_out, n_out)
            if debug_writer is not None:
                debug_writer.close()
            writer.close()
        except BaseException:
            writer.abort()
            if debug_writer is not None:
                debug_writer.abort()
            raise
        finally:
            gen_pool.shutdown(wait=True, cancel_futures=True)
        timings["total"] = time.perf_counter() - t_start
        if stats["no_face"]:
            log.warning("%d of %d frames had no face and were left unchanged", stats["no_face"], n_out)
        return RunResult(
            out, n_out, stats["no_face"], fps, cached_dets is not None, int(silent.sum()), timings
        )


def _composite_mode(mode: str) -> str:
    return "improved" if mode == "uhq" else mode  # uhq composites like improved, then refines


def _blend_options(config: RunConfig) -> BlendOptions:
    c = config.composite
    return BlendOptions(
        mask=MaskOptions(region=c.mask_region, dilate=c.mask_dilate, feather=c.mask_feather),
        colour_match=c.colour_match,
        sharpen=c.sharpen,
        regrain=c.regrain,
        blend=c.blend,
    )


def _placement(geo: FaceGeometry, size: int, index: int, aligned: bool) -> Placement:
    angle = eye_angle(geo.landmarks) if aligned and geo.landmarks is not None else 0.0
    return Placement.from_box(geo.box, size, geo.landmarks, index, angle)


def _fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def _generate(model, crops: np.ndarray, mels: np.ndarray, device: str, dtype) -> np.ndarray:
    """Upstream's pre/post-processing: lower half zeroed, 6 channels /255, x255 then uint8 truncation."""
    import torch

    with torch.inference_mode():
        faces = torch.from_numpy(np.ascontiguousarray(crops)).to(device)
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


__all__ = [
    "LipSyncPipeline",
    "RunResult",
    "run",
    "resolve_device",
    "loop_index",
    "silent_frames",
    "Wav2LipUHQError",
]
