"""Media I/O through PyAV (FFmpeg's libraries): streaming decode, one-pass encode, atomic output.

Frames are BGR uint8 (what the Wav2Lip models were trained on). Memory stays bounded:
frames are yielded one at a time and the writer encodes as it receives them.

Timing: a variable-frame-rate input (phone videos) is read on a constant grid, frame i being
the input frame on screen at time i / fps (``iter_frames``), so motion keeps its speed.
Colour: RGB <-> YUV conversions use swscale's accurate rounding, and outputs are tagged with
their matrix and range, so pixels a run does not touch come back as they went in.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import InputError, OutputError
from .options import check_fields, option

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    width: int
    height: int
    fps: float  # the rate frames are read at (see iter_frames): the output's rate
    frame_rate: Fraction
    frame_count: int  # exact for images; container estimate for videos (counted on decode)
    is_image: bool
    has_audio: bool
    is_vfr: bool = False  # timestamps are irregular: frames are read on a constant grid
    duration: float = 0.0  # seconds from the first frame to the end of the last (0: unknown)


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
    """Size, frame rate and length of a face video or image (errors name the file).

    For a variable-frame-rate video, ``frame_rate`` is the rate frames are read at (the median
    frame interval, snapped to a standard rate) and ``frame_count`` the frames on that grid.
    Results are cached per file version (path, size, modification time).
    """
    path = Path(path)
    if is_image(path):
        img = read_image(path)
        return MediaInfo(path, img.shape[1], img.shape[0], 25.0, Fraction(25), 1, True, False)
    _require_file(path, "face video")
    st = path.stat()
    return _probe_video(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _probe_video(name: str, size: int, mtime_ns: int) -> MediaInfo:
    path = Path(name)
    with _open(path, "face video") as container:
        if not container.streams.video:
            raise InputError(f"{path}: contains no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise InputError(f"{path}: the video stream has no frame size (corrupt file?)")
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        count = stream.frames
        if not count and stream.duration and stream.time_base:
            count = round(float(stream.duration * stream.time_base) * float(rate))
        if not count and container.duration:
            count = round(container.duration / 1_000_000 * float(rate))
        has_audio = bool(container.streams.audio)
        timing = _scan_timing(container, stream)
    if timing is None:
        return MediaInfo(path, width, height, float(rate), Fraction(rate), int(count or 0), False, has_audio)
    grid, is_vfr, duration = timing
    if is_vfr:
        rate, count = grid, max(1, round(duration * float(grid)))
        log.info("%s: variable frame rate; read at %s fps (%d frames)", path, _rate_str(rate), count)
    return MediaInfo(
        path, width, height, float(rate), Fraction(rate), int(count or 0), False, has_audio, is_vfr, duration
    )


# Rates a median frame interval snaps to: phone clips jitter around these.
_STANDARD_RATES = tuple(
    Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60", "120")
) + (Fraction(10), Fraction(12), Fraction(15), Fraction(20))


def _scan_timing(container, stream) -> tuple[Fraction, bool, float] | None:
    """(grid rate, variable?, duration) from the packets' timestamps: demuxing only, no decoding.

    The stream is variable-rate when some frame interval differs from the median by over 25 %
    (timestamp rounding, e.g. Matroska's milliseconds, stays far below that).
    """
    import av

    pts = []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                pts.append(packet.pts)
    except av.FFmpegError:
        pass  # a damaged tail: iter_frames reports it with the frame number
    if len(pts) < 3 or not stream.time_base:
        return None
    tb = float(stream.time_base)
    times = np.unique(np.asarray(pts, dtype=np.float64)) * tb
    steps = np.diff(times)
    if len(steps) < 2:
        return None
    median = float(np.median(steps))
    is_vfr = bool(np.any(np.abs(steps - median) > 0.25 * median))
    duration = float(times[-1] - times[0] + steps[-1])  # the last frame lasts as long as the one before
    return _snap_rate(1.0 / median), is_vfr, duration


def _snap_rate(fps: float) -> Fraction:
    """The nearest standard rate within 2 % (timestamps in ms give 1000/33 for 30), else ``fps``."""
    std = min(_STANDARD_RATES, key=lambda r: abs(fps / float(r) - 1.0))
    if abs(fps / float(std) - 1.0) < 0.02:
        return std
    return Fraction(fps).limit_denominator(1001)


def _rate_str(rate: Fraction) -> str:
    return f"{float(rate):.3f}".rstrip("0").rstrip(".")


# Accurate rounding both ways (swscale's default loses about one level in Y, U and V) and full
# chroma interpolation on decode: an untouched pixel survives decode -> encode.
def _sws_flags(decode: bool) -> int:
    from av.video.reformatter import Interpolation

    flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND
    return int(flags | Interpolation.FULL_CHR_H_INT) if decode else int(flags)


def _matrix_for(width: int, height: int) -> str:
    """The YUV matrix players assume for an untagged video of this size: BT.709 for HD, else BT.601."""
    return "itu709" if height >= 720 or width >= 1280 else "itu601"


# AVColorSpace -> (Kr, Kb): BT.709, BT.470BG and SMPTE 170M (both BT.601), BT.2020 (NCL, CL)
_BT601, _BT2020 = (0.299, 0.114), (0.2627, 0.0593)
_KR_KB = {1: (0.2126, 0.0722), 5: _BT601, 6: _BT601, 9: _BT2020, 10: _BT2020}
_SPC_UNSPECIFIED, _RANGE_FULL = 2, 2


@functools.cache
def _yuv_to_bgr_matrix(kr: float, kb: float, full: bool) -> np.ndarray:
    """3x4 affine map from (Y, U, V) codes to (B, G, R) levels, for ``cv2.transform``."""
    kg = 1.0 - kr - kb
    ys, cs, y0 = (1.0, 1.0, 0.0) if full else (255 / 219, 255 / 224, 16.0)
    rows = np.array(
        [
            [ys, 2 * (1 - kb) * cs, 0.0],  # B
            [ys, -2 * kb * (1 - kb) * cs / kg, -2 * kr * (1 - kr) * cs / kg],  # G
            [ys, 0.0, 2 * (1 - kr) * cs],  # R
        ]
    )
    offset = -(rows[:, 0] * y0 + (rows[:, 1] + rows[:, 2]) * 128.0)
    return np.hstack([rows, offset[:, None]]).astype(np.float32)


def _yuv420_to_bgr(frame) -> np.ndarray | None:
    """8-bit 4:2:0 -> BGR with exact rounding in OpenCV (swscale's accurate path is ~10x slower)."""
    import cv2

    spc = frame.colorspace
    if spc == _SPC_UNSPECIFIED:
        spc = 1 if _matrix_for(frame.width, frame.height) == "itu709" else 6
    w, h = frame.width, frame.height
    if spc not in _KR_KB or w % 2 or h % 2:  # odd sizes: swscale's accurate path (rare)
        return None
    full = frame.format.name == "yuvj420p" or frame.color_range == _RANGE_FULL
    if _KR_KB[spc] == _KR_KB[6] and not full:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)  # BT.601 limited, rounded
    y, u, v = (
        np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width] for p in frame.planes[:3]
    )
    u = cv2.resize(u, (w, h), interpolation=cv2.INTER_LINEAR)
    v = cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.transform(cv2.merge([np.ascontiguousarray(y), u, v]), _yuv_to_bgr_matrix(*_KR_KB[spc], full))


def _to_bgr(frame) -> np.ndarray:
    """BGR pixels of a decoded frame: its tagged matrix and range, or what players assume when untagged."""
    img = _yuv420_to_bgr(frame) if frame.format.name in ("yuv420p", "yuvj420p") else None
    if img is None:
        src = None
        if frame.format.name.startswith("yuv") and frame.colorspace == _SPC_UNSPECIFIED:
            src = _matrix_for(frame.width, frame.height)
        img = frame.to_ndarray(format="bgr24", src_colorspace=src, interpolation=_sws_flags(True))
    rotation = getattr(frame, "rotation", 0) or 0
    if rotation % 360:
        img = np.ascontiguousarray(np.rot90(img, k=(rotation // 90) % 4))
    return img


def iter_frames(
    path: str | Path, limit: int | None = None, rate: Fraction | None = None, start: int = 0
) -> Iterator[np.ndarray]:
    """Decode frames (BGR uint8) one by one, applying the container's rotation metadata.

    Frames come on a constant grid of ``rate`` (default: ``probe(path).frame_rate`` when the
    video is variable-rate, else every frame in order): output frame i is the input frame on
    screen at the middle of output frame i's interval, (i + 0.5) / rate, duplicated or dropped
    by timestamp. ``limit`` counts output frames. ``start``: begin at frame ``start`` (the same
    frame as the ``start``-th of a decode from the beginning; by seeking where the timestamps
    say exactly which frame that is, else by decoding and dropping the frames before it).

    A file that stops decoding part way raises InputError after the frames already yielded;
    a file with no decodable frame raises InputError.
    """
    path = Path(path)
    if is_image(path):
        yield read_image(path)
        return
    if rate is None and limit != 1:  # one frame (size, thumbnail): no need to scan the timing
        info = probe(path)
        rate = info.frame_rate if info.is_vfr else None
    n_in = [0]
    n = 0
    with _open(path, "face video") as container:
        if not container.streams.video:
            raise InputError(f"{path}: contains no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first_pts = _seek(container, stream, start) if start and rate is None else None
        frames = _decoded(container, stream, path, n_in)
        if first_pts is not None:
            frames = _from_pts(container, stream, frames, first_pts, start, (path, n_in))
        elif start:
            frames = itertools.islice(frames if rate is None else _on_grid(frames, Fraction(rate)), start, None)
            rate = None
        for frame in frames if rate is None else _on_grid(frames, Fraction(rate)):
            yield _to_bgr(frame)
            n += 1
            if limit is not None and n >= limit:
                return
        if first_pts is not None:
            return  # the frame count check needs the frames before the seek
        expected = stream.frames
        if expected and n_in[0] < expected - 1:
            raise InputError(
                f"{path}: the video is truncated: {n_in[0]} of its {expected} frames could be decoded"
            )
    if n == 0:
        raise InputError(f"{path}: no video frame could be decoded (corrupt or truncated file)")


def _seek(container, stream, start: int) -> int | None:
    """Seek to the key frame before frame ``start``; that frame's timestamp, to drop the frames
    before it. None (nothing moved) where the timestamps do not say which frame it is: missing or
    repeated ones, or fewer frames than ``start``."""
    import av

    pts = []
    try:
        for packet in container.demux(stream):
            if packet.size:
                pts.append(packet.pts)
    except av.FFmpegError:
        pts.append(None)
    if None in pts or len(set(pts)) != len(pts) or len(pts) <= start:
        container.seek(0, stream=stream, backward=True, any_frame=False)
        return None
    target = sorted(pts)[start]
    container.seek(target, stream=stream, backward=True, any_frame=False)
    return target


def _from_pts(container, stream, frames: Iterator, target: int, start: int, where: tuple) -> Iterator:
    """The frames from timestamp ``target`` on, after ``_seek``; where the seek went past it,
    from the beginning instead, dropping ``start`` frames."""
    for frame in frames:
        if frame.pts is not None and frame.pts < target:
            continue
        if frame.pts != target:
            log.debug("%s: the seek to frame %d missed; decoding from the start", where[0], start)
            container.seek(0, stream=stream, backward=True, any_frame=False)
            yield from itertools.islice(_decoded(container, stream, *where), start, None)
            return
        yield frame
        break
    yield from frames


def _decoded(container, stream, path: Path, counter: list[int]) -> Iterator:
    import av

    try:
        for frame in container.decode(stream):
            counter[0] += 1
            yield frame
    except av.FFmpegError as exc:
        raise InputError(
            f"{path}: the video is corrupt or truncated after frame {counter[0]} ({exc})"
        ) from exc


def _on_grid(frames: Iterable, rate: Fraction) -> Iterator:
    """Resample decoded frames to a constant rate by their timestamps (see iter_frames)."""
    step = 1.0 / float(rate)
    i, current, t0, last_t, last_len = 0, None, None, None, step
    # the last frame lasts as long as the one before it (its own duration is often nominal)
    for frame in frames:
        t = frame.time
        if t is None:  # no timestamp: assume the next grid slot
            t = (last_t + step) if last_t is not None else 0.0
        else:
            t0 = t if t0 is None else t0
            t -= t0
        if last_t is not None and t <= last_t:
            continue  # a repeated or out-of-order timestamp: keep the earlier frame
        while current is not None and (i + 0.5) * step < t:
            yield current
            i += 1
        if last_t is not None:
            last_len = t - last_t
        current, last_t = frame, t
    if current is None:
        return
    end = last_t + last_len
    while (i + 0.5) * step < end:
        yield current
        i += 1


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


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class EncodeSettings:
    crf: int = option(16, "quality, lower is better (16: visually lossless)", group="output", minimum=0,
                      maximum=51, step=1, label="quality (CRF)")
    # faster: the same quality as medium at a given CRF, ~40% less CPU (bench/bench_encode.py)
    preset: str = option("faster", "encoder speed preset (faster: as good as medium at the same CRF)",
                         group="output", choices=X264_PRESETS, widget="dropdown", label="encoder preset")
    lossless: bool = option(False, "exact RGB frames: FFV1 + FLAC in .mkv", group="output")
    audio_bitrate: int = option(192_000, "audio bitrate in bits/s (lossy outputs)", group="output",
                                minimum=32_000, maximum=512_000, widget="number", ui=False)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class OutputFormat:
    """What an output file name is written as."""

    container: str  # FFmpeg muxer
    video_codec: str
    audio_codec: str
    description: str
    even_size: bool = False  # H.264 in 4:2:0 cannot code an odd width or height


_H264 = ("libx264", "aac", "H.264 + AAC", True)
OUTPUT_FORMATS: dict[str, OutputFormat] = {
    ".mp4": OutputFormat("mp4", *_H264),
    ".m4v": OutputFormat("mp4", *_H264),
    ".mov": OutputFormat("mov", *_H264),
    ".mkv": OutputFormat("matroska", *_H264),
    ".webm": OutputFormat("webm", "libvpx-vp9", "libopus", "VP9 + Opus"),
}
LOSSLESS_FORMAT = OutputFormat("matroska", "ffv1", "flac", "FFV1 (RGB) + FLAC")
# a layer with an alpha channel, for editors: ProRes 4444 (10-bit 4:4:4 + alpha), video only
ALPHA_FORMAT = OutputFormat("mov", "prores_ks", "", "ProRes 4444 + alpha")
SUPPORTED_OUTPUTS = ".mp4, .m4v, .mov, .mkv (H.264 + AAC), .webm (VP9 + Opus); lossless: .mkv"


def check_output_path(path: str | Path, lossless: bool = False) -> OutputFormat:
    """The container and codecs ``path`` will be written with, or OutputError naming the file.

    Cheap (no torch, no file created): callers validate the output before loading any model.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not suffix:
        raise OutputError(f"{path}: the output needs a file extension; supported: {SUPPORTED_OUTPUTS}")
    if lossless:
        if suffix != ".mkv":
            raise OutputError(f"{path}: lossless output is Matroska (FFV1 + FLAC); use a .mkv name")
        fmt = LOSSLESS_FORMAT
    elif suffix not in OUTPUT_FORMATS:
        raise OutputError(f"{path}: {suffix} is not a supported output; supported: {SUPPORTED_OUTPUTS}")
    else:
        fmt = OUTPUT_FORMATS[suffix]
    import av

    missing = [c for c in (fmt.video_codec, fmt.audio_codec) if c not in av.codecs_available]
    if missing:
        raise OutputError(f"{path}: this FFmpeg build has no {' / '.join(missing)} encoder for {suffix}")
    return fmt


def encoded_size(width: int, height: int, fmt: OutputFormat) -> tuple[int, int]:
    """The frame size written for a ``width`` x ``height`` input (H.264 4:2:0 rounds up to even)."""
    if fmt.even_size:
        return width + width % 2, height + height % 2
    return width, height


# x264 preset -> libvpx-vp9 cpu-used (speed/quality trade-off of the same spirit)
_VP9_SPEED = {"ultrafast": 8, "superfast": 8, "veryfast": 7, "faster": 6, "fast": 5, "medium": 4,
              "slow": 3, "slower": 2, "veryslow": 1}
_COLOUR_TAGS = {"itu709": 1, "itu601": 6}  # AVCOL_SPC / _PRI / _TRC: BT.709, SMPTE 170M (BT.601)
OPUS_RATE = 48_000


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """(channels, n) float samples from ``rate`` to ``target`` Hz (polyphase)."""
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(samples, target // g, rate // g, axis=1).astype(np.float32)


class VideoWriter:
    """Encode BGR frames and an audio track into ``path``, atomically.

    Frames go to a temporary file beside ``path``; ``close()`` renames it into place,
    ``abort()`` (or an exception inside ``with``) removes it. Audio is muxed as frames arrive,
    so packets interleave without buffering the whole video. The container and codecs follow
    the name (``check_output_path``); ``settings.lossless`` writes FFV1 + FLAC in Matroska.
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
        fmt: OutputFormat | None = None,
    ) -> None:
        """``fmt``: write this format whatever the name (``ALPHA_FORMAT``: frames are BGRA, the
        alpha a float in [0, 1], or 10-bit in a uint16 array, or 8-bit in a uint8 one)."""
        import av

        self.path = Path(path)
        # Lossless is Matroska whatever the name (library callers); users are held to .mkv upstream.
        self.format = fmt or (LOSSLESS_FORMAT if settings.lossless else check_output_path(self.path))
        if not self.path.parent.is_dir():
            raise OutputError(f"{self.path.parent}: output folder does not exist")
        if not os.access(self.path.parent, os.W_OK):
            raise OutputError(f"{self.path.parent}: output folder is not writable")
        self.tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.partial{self.path.suffix}")
        options = {"movflags": "+faststart"} if self.format.container in ("mp4", "mov") else {}
        try:
            self.container = av.open(str(self.tmp), mode="w", format=self.format.container, options=options)
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"{self.path}: cannot create the output ({exc})") from exc
        self.source_size = (width, height)
        self.width, self.height = encoded_size(width, height, self.format)
        self.padded = (self.width, self.height) != (width, height)
        if self.padded:
            log.warning(
                "%s: %dx%d is written as %dx%d: H.264 (4:2:0) needs even sizes, so the last column/row "
                "repeats the edge; .webm or --lossless keep the exact size",
                self.path, width, height, self.width, self.height,
            )
        self.frame_rate = Fraction(frame_rate).limit_denominator(1001 * 1000)
        self._matrix = _matrix_for(self.width, self.height)
        self._add_video_stream(settings)
        self._add_audio_stream(audio, settings)
        self.frames = 0
        self._closed = False
        self._queue = None
        self._thread = None
        self._error: BaseException | None = None
        if background:
            self._queue = queue.Queue(maxsize=8)
            self._thread = threading.Thread(target=self._drain, daemon=True)
            self._thread.start()

    def _add_video_stream(self, settings: EncodeSettings) -> None:
        codec = self.format.video_codec
        self.vstream = self.container.add_stream(codec, rate=self.frame_rate)
        self.vstream.width, self.vstream.height = self.width, self.height
        if codec == "ffv1":
            self.vstream.pix_fmt = "bgr0"
        elif codec == "prores_ks":  # 4444 with a 16-bit alpha plane: the 10-bit alpha we write, exact
            self.vstream.pix_fmt = "yuva444p10le"
            self.vstream.options = {"profile": "4444", "alpha_bits": "16", "vendor": "apl0"}
            cc = self.vstream.codec_context
            cc.colorspace = cc.color_primaries = cc.color_trc = _COLOUR_TAGS[self._matrix]
            cc.color_range = 1
        else:
            self.vstream.pix_fmt = "yuv420p"
            cc = self.vstream.codec_context
            cc.colorspace = cc.color_primaries = cc.color_trc = _COLOUR_TAGS[self._matrix]
            cc.color_range = 1  # MPEG (limited) range, what every player expects
            if codec == "libx264":
                self.vstream.options = {"crf": str(settings.crf), "preset": settings.preset}
            else:  # libvpx-vp9, constant quality: x264's CRF 16 ~ VP9's 31 (Google's advice for HD)
                self.vstream.options = {
                    "crf": str(min(63, settings.crf + 15)), "b": "0", "deadline": "good",
                    "cpu-used": str(_VP9_SPEED.get(settings.preset, 6)), "row-mt": "1",
                }
        self.vstream.codec_context.time_base = 1 / self.frame_rate

    def _add_audio_stream(self, audio: AudioTrack | None, settings: EncodeSettings) -> None:
        self.audio = audio
        self.astream = None
        self._audio_pos = 0
        if audio is None:
            return
        layout = "mono" if audio.samples.shape[0] == 1 else "stereo"
        samples = audio.samples if layout == "mono" else audio.samples[:2]
        codec = self.format.audio_codec
        rate = audio.sample_rate
        if codec == "libopus" and rate != OPUS_RATE:  # Opus codes 48 kHz (or its divisors)
            samples, rate = resample(samples, rate, OPUS_RATE), OPUS_RATE
        self._audio_rate = rate
        self._audio_samples = np.ascontiguousarray(samples, dtype=np.float32)
        self.astream = self.container.add_stream(codec, rate=rate)
        self.astream.layout = layout
        if codec in ("aac", "libopus"):
            opus_cap = 160_000 if codec == "libopus" else settings.audio_bitrate  # Opus is transparent there
            self.astream.bit_rate = min(settings.audio_bitrate, opus_cap)

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
        h, w = frame_bgr.shape[:2]
        if (w, h) != (self.width, self.height):
            frame_bgr = np.pad(frame_bgr, ((0, self.height - h), (0, self.width - w), (0, 0)), mode="edge")
        frame = self._to_frame(np.ascontiguousarray(frame_bgr))
        frame.pts = self.frames
        self.frames += 1
        self._mux(self.vstream.encode(frame))
        if self.astream is not None:
            self._write_audio_until(self.frames / float(self.frame_rate))

    def _to_frame(self, frame_bgr: np.ndarray):
        """BGR -> the codec's pixel format, with accurate rounding and the tagged matrix/range."""
        import av

        if self.format.video_codec == "prores_ks":
            return self._alpha_frame(frame_bgr)
        frame = av.VideoFrame.from_ndarray(frame_bgr, format="bgr24")
        if self.format.video_codec == "ffv1":
            return frame
        return frame.reformat(
            format="yuv420p",
            dst_colorspace=self._matrix,
            dst_color_range="MPEG",
            interpolation=_sws_flags(False),
        )

    def _alpha_frame(self, bgra: np.ndarray):
        """BGR + alpha -> yuva444p10le; the alpha plane is written directly, rounded to 10 bits
        (swscale would truncate it)."""
        import av

        alpha = bgra[..., 3]
        if alpha.dtype.kind == "f":
            a10 = np.rint(alpha * 1023.0)
        else:
            a10 = alpha if alpha.dtype == np.uint16 else np.rint(alpha.astype(np.float32) * (1023 / 255))
        bgr = np.ascontiguousarray(bgra[..., :3], dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(
            format="yuva444p10le", dst_colorspace=self._matrix, dst_color_range="MPEG",
            interpolation=_sws_flags(False),
        )
        plane = frame.planes[3]
        rows = np.zeros((self.height, plane.line_size // 2), np.uint16)
        rows[:, : self.width] = np.clip(np.rint(a10), 0, 1023)
        plane.update(rows.tobytes())
        return frame

    def _write_audio_until(self, seconds: float | None) -> None:
        import av

        total = self._audio_samples.shape[1]
        end = total if seconds is None else min(total, round(seconds * self._audio_rate))
        step = self.astream.codec_context.frame_size or 1024
        while self._audio_pos + step <= end or (seconds is None and self._audio_pos < end):
            chunk = self._audio_samples[:, self._audio_pos : self._audio_pos + step]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk), format="fltp", layout=self.astream.layout.name
            )
            frame.sample_rate = self._audio_rate
            frame.pts = self._audio_pos
            self._audio_pos += chunk.shape[1]
            self._mux(self.astream.encode(frame))

    def _mux(self, packets) -> None:
        for packet in packets:
            self.container.mux(packet)

    def close(self) -> Path:
        """Flush, finish the file and move it into place."""
        self.finish()
        return self.commit()

    def finish(self) -> None:
        """Flush and finish the temporary file, not yet under its name (``commit`` moves it there):
        several outputs of one run appear together or not at all."""
        if self._closed or getattr(self, "_finished", False):
            return
        try:
            self._stop_thread()
            if self._error is not None:
                raise self._error
            self._mux(self._flush_video())
            if self.astream is not None:
                self._write_audio_until(None)  # the whole audio, as upstream (no -shortest)
                self._mux(self.astream.encode(None))
            self.container.close()
        except Exception:
            self.abort()
            raise
        self._finished = True

    def commit(self) -> Path:
        """Move the finished file into place (after ``finish``)."""
        if self._closed:
            return self.path
        try:
            os.replace(self.tmp, self.path)
        except Exception:
            self.abort()
            raise
        self._closed = True
        return self.path

    def _flush_video(self):
        return self.vstream.encode(None)

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

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _RemuxWriter(VideoWriter):
    """A ``VideoWriter`` whose video stream is copied from a template (packets, no encoder);
    the audio is encoded and interleaved as ``VideoWriter`` does it."""

    def __init__(self, path: Path, template, audio: AudioTrack | None, settings: EncodeSettings) -> None:
        self._template = template
        self.codec, self.time_base = template.codec_context.name, template.time_base  # what parts must match
        cc = template.codec_context
        super().__init__(path, cc.width, cc.height, template.average_rate or template.guessed_rate, audio,
                         settings, background=False)

    def _add_video_stream(self, settings: EncodeSettings) -> None:
        self.vstream = self.container.add_stream_from_template(self._template)
        self.vstream.time_base = self._template.time_base

    def _flush_video(self):
        return []

    def copy(self, packet, shift: int) -> None:
        """One video packet of a part, its timestamps moved by ``shift`` (in its time base)."""
        packet.pts = None if packet.pts is None else packet.pts + shift
        packet.dts = None if packet.dts is None else packet.dts + shift
        ts, base = packet.pts if packet.pts is not None else packet.dts, packet.time_base
        packet.stream = self.vstream  # muxing rescales from the part's time base
        self.container.mux(packet)
        if self.astream is not None and ts is not None and base is not None:
            self._write_audio_until(float((ts + (packet.duration or 0)) * base))


def join_videos(parts: Sequence[Path], out: Path, audio: AudioTrack | None,
                settings: EncodeSettings = EncodeSettings()) -> int:
    """Concatenate video-only ``parts`` (encoded alike, each starting with a key frame) into ``out``
    by copying their packets, no decode and no re-encode, and mux ``audio`` once, encoded as
    ``VideoWriter`` encodes it. ``out`` appears only when complete. Returns the frame count."""
    import av

    if not parts:
        raise OutputError(f"{out}: nothing to join")
    first = av.open(str(parts[0]))
    try:
        writer = _RemuxWriter(Path(out), first.streams.video[0], audio, settings)
    finally:
        first.close()
    frames, shift = 0, 0
    try:
        for part in parts:
            frames, shift = _copy_part(writer, Path(part), frames, shift)
        writer.frames = frames
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return frames


def _copy_part(writer: _RemuxWriter, part: Path, frames: int, shift: int) -> tuple[int, int]:
    """Copy one part's video packets; (frames so far, the next part's timestamp shift)."""
    import av

    with av.open(str(part)) as container:
        stream = container.streams.video[0]
        if stream.codec_context.name != writer.codec:
            raise OutputError(f"{part}: coded as {stream.codec_context.name}, the first part as {writer.codec}: "
                              "parts must be encoded alike")
        if stream.time_base != writer.time_base:
            raise OutputError(f"{part}: time base {stream.time_base} differs from the first part's")
        step, end, first = _frame_ticks(stream), shift, True
        for packet in container.demux(stream):
            if packet.dts is None and packet.pts is None:
                continue  # the demuxer's flush packet
            if first and not packet.is_keyframe:
                raise OutputError(f"{part}: does not start with a key frame, so it cannot be joined by copying")
            first = False
            ts = packet.pts if packet.pts is not None else packet.dts
            writer.copy(packet, shift)
            end = max(end, ts + shift + step)
            frames += 1
    return frames, end


def _frame_ticks(stream) -> int:
    """One frame's duration in the stream's time base."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return max(1, round(1 / (Fraction(rate) * stream.time_base)))
