"""The lip-sync pipeline: one API behind the CLI, the WebUI tab, the app and the tests.

One streaming pass, as stages: decode -> track (detect + landmarks, batched | cached; smoothed
with a short look-ahead) -> generate (batched, one batch ahead in a worker thread) ->
composite (after optional upscale and face parsing) -> post-process (restore, refine) ->
encode. Memory is bounded by the batch sizes, not by the video length.

- ``source``: decode (``FaceFrames``) and track (``FaceTracking``), in output order;
- ``audio_prep``: the audio features per output frame, shared by ``run`` and ``preview``;
- ``loop``: ``FrameLoop`` (batches, the generator's worker, work in flight) and ``Encoder``;
- ``extras``: the extra outputs (raw, composited, debug, mask) written beside the result;
- ``stages``: the per-frame stages after the generator, one interface;
- ``model_bank``: models loaded once and kept between runs;
- ``..generators``: the generator interface, Wav2Lip its first implementation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..compositing import BlendOptions, make_compositor
from ..config import RunConfig
from ..devices import cpu_has_native_bf16, resolve_device, resolve_precision
from ..errors import InputError, NoFaceError, Wav2LipUHQError
from ..faces.stream import FaceTrackStream
from ..generators import Generator
from ..masks import MaskOptions
from ..model_needs import uses_musetalk
from ..outputs import extra_kinds, reserve_output
from ..resume import open_job, resume_config
from ..video import iter_frames, probe
from . import timeline
from .audio_prep import RunAudio, silent_frames
from .extras import with_taps
from .loop import BATCH_FRAME_BYTES, Collect, Encoder, FrameLoop, SpeakerLoops, draw_debug
from .model_bank import ModelBank, PipelineModels
from .source import (
    LOOP_CACHE_BYTES,
    FaceFrames,
    FaceTracking,
    _check_box,
    loop_index,
    loop_mode,
    preprocess_frame,
    segment_span,
    tracked_frames,
)
from .stages import Composite, FrameWork, Parse, Refine, Restore, Stage, Upscale  # noqa: F401 - FrameWork re-exported
from .timeline import Voice

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]


@dataclass
class RunResult:
    output: Path
    frames: int
    frames_without_face: int
    fps: float
    detection_cached: bool
    silent_frames: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the result's summary should tell the user
    extra_outputs: dict[str, Path] = field(default_factory=dict)  # kind -> file (--extra-outputs)


class LipSyncPipeline:
    """Holds loaded models between runs (the UI reuses one instance)."""

    def __init__(
        self,
        device: str = "auto",
        refiner_factory: Callable[[Any, str], Any] | None = None,
        generator_factory: Callable[[RunConfig, str], Generator] | None = None,
    ) -> None:
        """``refiner_factory(refine_options, device)`` replaces the diffusers refiner for ``uhq``
        (the WebUI passes one that refines with its own loaded SD model);
        ``generator_factory(config, device)`` replaces Wav2Lip from ``config.checkpoint`` with
        another implementation of ``generators.Generator`` (it keeps its own models)."""
        self.device = resolve_device(device)
        self.refiner_factory = refiner_factory
        self.generator_factory = generator_factory
        self.models = PipelineModels(refiner_factory)

    def load_generator(self, path: Path, device: str, precision: str = "fp32") -> Generator:
        """The Wav2Lip generator of a checkpoint file, kept in the model bank."""
        return self.models.load_generator(path, device, precision)

    def _device(self, config: RunConfig) -> str:
        return resolve_device(config.device) if config.device != "auto" else self.device

    def _generator(self, config: RunConfig, device: str) -> Generator:
        if self.generator_factory is not None:
            return self.generator_factory(config, device)
        return self.models.generator(config, device)

    def _track(self, config: RunConfig, landmarks, width: int, height: int, face_index: int | None) -> FaceTrackStream:
        f = config.faces
        return FaceTrackStream(
            width, height, f.pads, f.smoothing, face_index, fixed=f.box is not None, landmarks=landmarks,
            landmark_smoothing=config.composite.landmark_smoothing,
        )

    def _tracks(self, config: RunConfig, landmarks, width: int, height: int, voices: list[Voice]):
        """One face track per speaker."""
        return [self._track(config, landmarks, width, height, v.face_index) for v in voices]

    def _stages(self, config: RunConfig, device: str, cancelled: Callable[[], bool], refine: bool = True) -> list[Stage]:
        """The per-frame stages after the generator that ``config`` asks for, in order."""
        c = config.composite
        restorer, upscaler = self.models.restorer(config, device), self.models.upscaler(config, device)
        parser = self.models.parser(config, device)
        compositor = make_compositor(_composite_mode(config.mode), _blend_options(config))
        if parser is not None and c.musetalk_blend == "parsing" and uses_musetalk(config, box_too=True):
            from ..generators.musetalk import ParsingBlend

            compositor, parser = ParsingBlend(parser), None  # MuseTalk's own blend parses itself
        stages: list[Stage] = [Upscale(upscaler)] if upscaler is not None else []
        if parser is not None:
            stages.append(Parse(parser, compositor, c.parser_keep_neck))
        stages.append(Composite(compositor))
        if restorer is not None:
            stages.append(Restore(restorer, c.restore_strength))
        if refine and config.mode == "uhq":
            from ..refine import RefineSession

            session = RefineSession(self.models.refiner(config, device), self.models.landmarks(config, device))
            stages.append(Refine(session, cancelled))
        return stages

    def _loop(self, config: RunConfig, generator: Generator, audio: RunAudio, stages, sink, cancelled, report,
              keep_sources: bool = False, frames: int | None = None, reuse_prepared: bool = True) -> FrameLoop:
        c = config.composite
        return FrameLoop(
            generator, audio, stages, sink, batch_size=config.batch_size, keep_silent=c.silence == "keep",
            aligned=c.aligned, keep_sources=keep_sources, cancelled=cancelled,
            report=report, frames=frames, reuse_prepared=reuse_prepared,
        )

    def _loops(self, config: RunConfig, generator: Generator, audios: list[RunAudio], stages: list[list[Stage]],
               sink, cancelled, report, keep_sources: bool = False, frames: int | None = None) -> SpeakerLoops:
        """One loop per speaker, chained into ``sink``, each with its own stages (a refinement
        session follows one face); only the last one reports progress and keeps its sources (the
        preview's overlay, the extra outputs: they are drawn from the last speaker's records)."""
        last = len(audios) - 1
        keep_sources = keep_sources or bool(extra_kinds(config))

        def make(k: int, out) -> FrameLoop:
            return self._loop(config, generator, audios[k], stages[k], out, cancelled,
                              report if k == last else (lambda *a: None), keep_sources and k == last,
                              frames, reuse_prepared=k == 0)

        return SpeakerLoops(make, len(audios), sink)

    # -- one frame, for the UI ----------------------------------------------------------------
    def preview(self, config: RunConfig, frame_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(result, debug overlay) for output frame ``frame_index``, BGR: to tune settings fast.

        The same audio features, generator call and stages as ``run`` (so it is the run's frame
        where the face track agrees), except SD refinement (``uhq``), which depends on the
        frames before it: the preview shows the frame it would refine."""
        device = self._device(config)
        info, fps = _face_info(config)
        generator = self._generator(config, device)
        shape, voices = timeline.plan(config, info, fps, timeline.read_voices(config))
        audios = timeline.voice_audios(voices, shape, fps, generator, config)
        index = max(0, min(frame_index, audios[0].frames - 1))
        src_index = _source_index(index, info, loop_mode(config))
        frame = _decode_one(config, src_index)
        _check_box(config, frame.shape[1], frame.shape[0])
        tracks = self._tracks(config, self.models.landmarks(config, device), frame.shape[1], frame.shape[0], voices)
        detections = self.models.detector(config, device).detect([np.ascontiguousarray(frame[:, :, ::-1])])
        geos = []
        for track in tracks:
            track.add(detections, [frame])
            geos.append(next(track.ready(end=True))[1])
        if not any(g.valid for g in geos):
            raise NoFaceError(f"{config.face}: no face in frame {src_index}")
        sink = Collect()
        stages = [self._stages(config, device, lambda: False, refine=False) for _ in voices]
        with self._loops(config, generator, audios, stages, sink, lambda: False, lambda *a: None, True) as loops:
            loops.push(frame, geos, index, src_index)
            loops.flush()
        item = sink.items[0]
        return np.array(item.frame), draw_debug(item.source, item.placement, item.alpha, item.roi)

    def face_boxes(self, config: RunConfig, frame_index: int = 0) -> list[tuple[int, int, int, int]]:
        """The faces detected in the preview's frame, left to right as ``--face-index`` counts them
        (x1, y1, x2, y2 in frame pixels): what a click on the preview picks from."""
        device = self._device(config)
        info, _ = _face_info(config)
        frame = _decode_one(config, _source_index(max(0, frame_index), info, loop_mode(config)))
        dets = np.asarray(self.models.detector(config, device).detect([np.ascontiguousarray(frame[:, :, ::-1])])[0])
        boxes = [tuple(round(float(v)) for v in d[:4]) for d in dets.reshape(-1, 5)]
        return sorted(boxes, key=lambda b: (b[0] + b[2]) / 2)

    # -- the run ------------------------------------------------------------------------
    def run(
        self,
        config: RunConfig,
        progress: ProgressFn | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> RunResult:
        """Lip-sync ``config.face`` to ``config.audio``; the output's name is reserved before any
        work starts (``outputs.reserve_output``) and the file appears there only when complete.
        ``config.resume``: continue the interrupted run of these inputs and settings (``resume``)."""
        if config.resume:
            config = resume_config(config)  # the job's output; refused when inputs or settings changed
        with reserve_output(config) as out:
            return self._run(config, out, progress or (lambda stage, done, total: None), cancel or (lambda: False))

    def _run(self, config: RunConfig, out: Path, report: ProgressFn, cancelled: Callable[[], bool]) -> RunResult:
        t_start = time.perf_counter()
        device = self._device(config)
        preloaded = self.models.preload_generator(config, device) if self.generator_factory is None else None

        report("reading audio", 0, 1)
        info, fps = _face_info(config)
        shape, voices = timeline.plan(config, info, fps, timeline.read_voices(config))  # ranges vs the video
        timings = {"audio": time.perf_counter() - t_start}

        report("loading models", 0, 1)  # these load while the generator does
        detector, landmarks = self.models.detector(config, device), self.models.landmarks(config, device)
        stages = [self._stages(config, device, cancelled) for _ in voices]
        stages[-1] = with_taps(stages[-1], extra_kinds(config))  # the extra outputs see the last speaker's stages
        generator = preloaded.result() if preloaded is not None else self._generator(config, device)
        audios = timeline.voice_audios(voices, shape, fps, generator, config)
        track_audio, notes = timeline.output_track(config, info, voices, shape)
        n_out = audios[0].frames

        job = open_job(config, out, n_out, fps)  # --resume-every: in segments, resumable (``resume``)
        span = segment_span(job.run_config(config) if job else config, info, n_out,
                            self._track(config, landmarks, 1, 1, voices[0].face_index))  # --segment, or a resume
        n = span.end - span.start
        frames = FaceFrames(config, info, n_out, span.track_from)  # decode: opened once, first frame peeked
        try:
            tracking = FaceTracking(config, info, n_out, detector,
                                    self._tracks(config, landmarks, frames.width, frames.height, voices))
            rate = info.frame_rate if not info.is_image else _fraction(fps)
            encoder = (job.encoder(frames.width, frames.height, rate, track_audio, config) if job else
                       Encoder.open(out, frames.width, frames.height, rate, None if config.frames.segment else
                                    track_audio, config))
            t_loop = time.perf_counter()
            loop_report = job.progress(report) if job else report
            try:
                with self._loops(config, generator, audios, stages, encoder, cancelled, loop_report, frames=n) as loops:
                    for frame, geometries, i, j in tracked_frames(frames, tracking, span):  # decode -> track
                        loops.push(frame, geometries, i, j)  # -> generate -> composite, post-process -> encode
                    loops.flush()
                timings["lipsync"] = time.perf_counter() - t_loop
                report("encoding", n, n)
                encoder.close()
            except BaseException:
                encoder.abort()
                raise
        finally:
            frames.close()
        timings["total"] = time.perf_counter() - t_start
        no_face = loops.no_face
        notes = _notes(config, info, encoder) + timeline.describe(voices, shape) + notes + _missing(voices, no_face, n)
        notes += [f"speakers {a} and {b} follow the same face in most frames: give each its own face index"
                  for a, b in tracking.same_faces()]
        return RunResult(out, job.frames if job else n, no_face[0], fps, tracking.detection_cached,
                         int(audios[0].silent[span.start : span.end].sum()), timings, notes, encoder.outputs)


def _missing(voices: list[Voice], no_face: list[int], n: int) -> list[str]:
    """Frames without a speaker's face, logged; notes for the extra speakers (the first speaker's
    count is the result's ``frames_without_face``)."""
    notes = []
    for v, missing in zip(voices, no_face):
        if not missing:
            continue
        who = f"speaker {v.number}: " if len(voices) > 1 else ""
        log.warning("%s%d of %d frames had no face and were left unchanged", who, missing, n)
        if v.number > 1:
            notes.append(f"{who}{missing} of {n} frames without its face were left unchanged")
    return notes


def _notes(config: RunConfig, info, encoder: Encoder) -> list[str]:
    """Where the result differs from what a user would assume, in words for the summary."""
    notes = []
    if config.mode == "fast":
        notes.append("fast mode keeps the reference implementation's frame count (Wav2Lip: its last mel window "
                     "ends before the audio does; MuseTalk: whole seconds x fps); the other modes cover the audio "
                     "to its end")
    if getattr(info, "is_vfr", False):
        notes.append(f"the input has a variable frame rate: it was read at a constant {info.fps:g} fps by timestamp")
    writer = encoder.writer
    if getattr(writer, "padded", False):
        (w, h), (pw, ph) = writer.source_size, (writer.width, writer.height)
        notes.append(f"{w}x{h} was written as {pw}x{ph} (H.264 needs even sizes; .webm or --lossless keep it)")
    return notes


def _face_info(config: RunConfig):
    """The face input's metadata and the output frame rate."""
    info = probe(config.face)
    fps = float(config.frames.fps) if info.is_image else info.fps
    if not fps or fps <= 0:
        raise InputError(f"{config.face}: the video has no usable frame rate")
    return info, fps


def _decode_one(config: RunConfig, src_index: int) -> np.ndarray:
    """Input frame ``src_index``, preprocessed and read-only (the preview's)."""
    frame = None
    for frame in iter_frames(config.face, limit=src_index + 1):
        pass
    if frame is None:
        raise InputError(f"{config.face}: no frame could be decoded")
    frame = preprocess_frame(frame, config.frames)
    frame.flags.writeable = False
    return frame


def _source_index(index: int, info, loop: str) -> int:
    """The input frame a run uses for output frame ``index``."""
    if info.is_image:
        return 0
    if info.frame_count and index >= info.frame_count:
        return loop_index(index, info.frame_count, loop)
    return index


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


def _fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def run(
    config: RunConfig, progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None
) -> RunResult:
    """Lip-sync ``config.face`` to ``config.audio`` (a fresh pipeline; models not kept)."""
    return LipSyncPipeline(config.device).run(config, progress, cancel)


__all__ = [
    "BATCH_FRAME_BYTES",
    "LOOP_CACHE_BYTES",
    "LipSyncPipeline",
    "ModelBank",
    "RunResult",
    "run",
    "resolve_device",
    "resolve_precision",
    "cpu_has_native_bf16",
    "loop_index",
    "preprocess_frame",
    "silent_frames",
    "Wav2LipUHQError",
]
