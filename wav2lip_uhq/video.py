"""Media I/O through PyAV (FFmpeg's libraries): streaming decode, one-pass encode, atomic output.

Frames are BGR uint8 (what the Wav2Lip models were trained on). Memory stays bounded:
frames are yielded one at a time and the writer encodes as it receives them.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError, OutputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    width: int
    height: int
    fps: float
    frame_rate: Fraction
    frame_count: int  # exact for images; container estimate for videos (counted on decode)
    is_image: bool
    has_audio: bool


@dataclass
class AudioTrack:
    """Decoded audio: float32 samples (channels, n) at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    def mono(self, sr: int) -> np.ndarray:
        wav = self.samples.mean(axis=0).astype(np.float32)
        if self.sample_rate != sr:
            from math import gcd

            from scipy.signal import resample_poly

            g = gcd(self.sample_rate, sr)
            wav = resample_poly(wav, sr // g, self.sample_rate // g).astype(np.float32)
        return wav


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: {what} file not found")
    if not path.is_file():
        raise InputError(f"{path}: {what} is not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: {what} file is empty")


def _open(path: Path, what: str):
    import av

    _require_file(path, what)
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise InputError(f"{path}: cannot be read as a media file ({exc.strerror or exc})") from exc


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    import cv2

    path = Path(path)
    _require_file(path, "face image")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: not a readable image")
    return img


def probe(path: str | Path) -> MediaInfo:
    """Size, frame rate and length of a face video or image (errors name the file)."""
    path = Path(path)
    if is_image(path):
        img = read_image(path)
        return MediaInfo(path, img.shape[1], img.shape[0], 25.0, Fraction(25), 1, True, False)
    with _open(path, "face video") as container:
        if not container.streams.video:
            raise InputError(f"{path}: contains no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        count = stream.frames
        if not count and stream.duration and stream.time_base:
            count = int(round(float(stream.duration * stream.time_base) * float(rate)))
        if not count and container.duration:
            count = int(round(container.duration / 1_000_000 * float(rate)))
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise InputError(f"{path}: the video stream has no frame size (corrupt file?)")
        return MediaInfo(
            path,
            width,
            height,
            float(rate),
            Fraction(rate),
            int(count or 0),
            False,
            bool(container.streams.audio),
        )


def iter_frames(path: str | Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """Decode frames (BGR uint8) one by one, applying the container's rotation metadata.

    A file that stops decoding part way raises InputError after the frames already yielded;
    a file with no decodable frame raises InputError.
    """
    import av

    path = Path(path)
    if is_image(path):
        yield read_image(path)
        return
    n = 0
    with _open(path, "face video") as container:
        if not container.streams.video:
            raise InputError(f"{path}: contains no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                img = frame.to_ndarray(format="bgr24")
                rotation = getattr(frame, "rotation", 0) or 0
                if rotation % 360:
                    img = np.ascontiguousarray(np.rot90(img, k=(rotation // 90) % 4))
                yield img
                n += 1
                if limit is not None and n >= limit:
                    return
        except av.FFmpegError as exc:
            raise InputError(f"{path}: the video is corrupt or truncated after frame {n} ({exc})") from exc
        expected = stream.frames
        if expected and n < expected - 1:
            raise InputError(f"{path}: the video is truncated: {n} of its {expected} frames could be decoded")
    if n == 0:
        raise InputError(f"{path}: no video frame could be decoded (corrupt or truncated file)")


def read_audio_track(path: str | Path) -> AudioTrack:
    import av

    path = Path(path)
    with _open(path, "audio") as container:
        if not container.streams.audio:
            raise InputError(f"{path}: contains no audio stream")
        stream = container.streams.audio[0]
        resampler = None
        chunks = []
        rate = stream.codec_context.sample_rate or stream.rate
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    rate = frame.sample_rate
                    layout = "mono" if len(frame.layout.channels) == 1 else "stereo"
                    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray())
        except av.FFmpegError as exc:
            raise InputError(f"{path}: the audio is corrupt or truncated ({exc})") from exc
    if not chunks:
        raise InputError(f"{path}: the audio stream is empty")
    samples = np.concatenate(chunks, axis=1).astype(np.float32)
    return AudioTrack(samples, int(rate))


def unique_output_path(face: Path, audio: Path, directory: Path, suffix: str = ".mp4") -> Path:
    """A new name that no existing file has: ``<face>_<audio>[_N].mp4``."""
    directory.mkdir(parents=True, exist_ok=True)
    base = f"{face.stem}_{audio.stem}"
    candidate = directory / f"{base}{suffix}"
    n = 1
    while candidate.exists():
        candidate = directory / f"{base}_{n}{suffix}"
        n += 1
    return candidate


@dataclass(frozen=True)
class EncodeSettings:
    crf: int = 16  # visually lossless for H.264
    preset: str = "faster"  # same quality as medium at a given CRF, ~40% less CPU (bench/bench_encode.py)
    lossless: bool = False  # FFV1 RGB in .mkv + FLAC, exact frames
    audio_bitrate: int = 192_000


class VideoWriter:
    """Encode BGR frames and an audio track into ``path``, atomically.

    Frames go to a temporary file beside ``path``; ``close()`` renames it into place,
    ``abort()`` (or an exception inside ``with``) removes it. Audio is muxed as frames arrive,
    so packets interleave without buffering the whole video.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        frame_rate: Fraction,
        audio: AudioTrack | None,
        settings: EncodeSettings = EncodeSettings(),
        background: bool = True,
    ) -> None:
        import av

        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise OutputError(f"{self.path.parent}: output folder does not exist")
        if not os.access(self.path.parent, os.W_OK):
            raise OutputError(f"{self.path.parent}: output folder is not writable")
        self.tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.partial{self.path.suffix}")
        fmt = (
            "matroska"
            if settings.lossless
            else ("mp4" if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") else None)
        )
        options = {"movflags": "+faststart"} if fmt == "mp4" else {}
        try:
            self.container = av.open(str(self.tmp), mode="w", format=fmt, options=options)
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"{self.path}: cannot create the output ({exc})") from exc
        self.width, self.height = width + width % 2, height + height % 2  # 4:2:0 needs even sizes
        self.frame_rate = Fraction(frame_rate).limit_denominator(1001 * 1000)
        if settings.lossless:
            self.vstream = self.container.add_stream("ffv1", rate=self.frame_rate)
            self.vstream.pix_fmt = "bgr0"
            self.vstream.width, self.vstream.height = width, height
            self.width, self.height = width, height
        else:
            self.vstream = self.container.add_stream("libx264", rate=self.frame_rate)
            self.vstream.pix_fmt = "yuv420p"
            self.vstream.width, self.vstream.height = self.width, self.height
            self.vstream.options = {"crf": str(settings.crf), "preset": settings.preset}
        self.vstream.codec_context.time_base = 1 / self.frame_rate
        self.audio = audio
        self.astream = None
        self._audio_pos = 0
        if audio is not None:
            layout = "mono" if audio.samples.shape[0] == 1 else "stereo"
            codec = "flac" if settings.lossless else "aac"
            self.astream = self.container.add_stream(codec, rate=audio.sample_rate)
            self.astream.layout = layout
            if codec == "aac":
                self.astream.bit_rate = settings.audio_bitrate
            self._audio_samples = audio.samples if layout == "mono" else audio.samples[:2]
        self.frames = 0
        self._closed = False
        self._queue = None
        self._thread = None
        self._error: BaseException | None = None
        if background:
            self._queue = queue.Queue(maxsize=8)
            self._thread = threading.Thread(target=self._drain, daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        """Encoder thread: x264 and the muxer run beside the caller's work (PyAV releases the GIL)."""
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            if self._error is None and not self._closed:
                try:
                    self._encode(frame)
                except BaseException as exc:  # reported to the caller on its next call
                    self._error = exc

    def write(self, frame_bgr: np.ndarray) -> None:
        """Queue (or encode) one frame. The writer owns the array afterwards: do not modify it."""
        if self._error is not None:
            raise self._error
        if self._queue is not None:
            self._queue.put(frame_bgr)
        else:
            self._encode(frame_bgr)

    def _stop_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _encode(self, frame_bgr: np.ndarray) -> None:
        import av

        h, w = frame_bgr.shape[:2]
        if (w, h) != (self.width, self.height):
            frame_bgr = np.pad(frame_bgr, ((0, self.height - h), (0, self.width - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr), format="bgr24")
        frame.pts = self.frames
        self.frames += 1
        self._mux(self.vstream.encode(frame))
        if self.astream is not None:
            self._write_audio_until(self.frames / float(self.frame_rate))

    def _write_audio_until(self, seconds: float | None) -> None:
        import av

        total = self._audio_samples.shape[1]
        end = total if seconds is None else min(total, int(round(seconds * self.audio.sample_rate)))
        step = self.astream.codec_context.frame_size or 1024
        while self._audio_pos + step <= end or (seconds is None and self._audio_pos < end):
            chunk = self._audio_samples[:, self._audio_pos : self._audio_pos + step]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk), format="fltp", layout=self.astream.layout.name
            )
            frame.sample_rate = self.audio.sample_rate
            frame.pts = self._audio_pos
            self._audio_pos += chunk.shape[1]
            self._mux(self.astream.encode(frame))

    def _mux(self, packets) -> None:
        for packet in packets:
            self.container.mux(packet)

    def close(self) -> Path:
        """Flush, finish the file and move it into place."""
        if self._closed:
            return self.path
        try:
            self._stop_thread()
            if self._error is not None:
                raise self._error
            self._mux(self.vstream.encode(None))
            if self.astream is not None:
                self._write_audio_until(None)  # the whole audio, as upstream (no -shortest)
                self._mux(self.astream.encode(None))
            self.container.close()
            os.replace(self.tmp, self.path)
        except Exception:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop the partial output."""
        self._closed = True
        self._stop_thread()
        try:
            self.container.close()
        except Exception:  # closing a broken container may fail; the file is removed anyway
            pass
        if self.tmp.exists():
            self.tmp.unlink()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
