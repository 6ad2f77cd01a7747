"""Training-side media helpers on top of :mod:`wav2lip_uhq.video`.

Training needs 25 fps video and 16 kHz mono audio. Sources at another frame rate are
converted by timestamp (output frame k shows the last source frame at or before k/25 s),
which keeps the clip's duration and audio-video sync.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from wav2lip_uhq import video as engine_video
from wav2lip_uhq.audio import SAMPLE_RATE

log = logging.getLogger(__name__)


def video_fps(path: str | Path) -> float:
    return float(engine_video.probe(path).fps)


def iter_video_frames(path: str | Path, fps: float | None = 25.0) -> Iterator[np.ndarray]:
    """BGR uint8 frames resampled to ``fps`` (None: as stored), assuming a constant source rate."""
    src_fps = video_fps(path)
    frames = engine_video.iter_frames(path)
    if fps is None or abs(src_fps - fps) < 1e-3:
        yield from frames
        return
    k = 0
    prev = None
    n_src = 0
    for i, img in enumerate(frames):
        t = i / src_fps
        while prev is not None and k / fps < t - 1e-9:
            yield prev
            k += 1
        prev = img
        n_src = i + 1
    if prev is not None:
        end = n_src / src_fps
        while k / fps < end - 1e-9:
            yield prev
            k += 1


def write_wav(path: str | Path, wav: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono wav (what upstream's loaders read), written atomically."""
    import soundfile as sf

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.wav")
    sf.write(str(tmp), np.clip(wav, -1, 1), sr, subtype="PCM_16")
    os.replace(tmp, path)


def write_video(
    path: str | Path,
    frames_bgr: Sequence[np.ndarray],
    fps: float = 25.0,
    audio: np.ndarray | None = None,
    sr: int = SAMPLE_RATE,
    crf: int = 18,
) -> Path:
    """H.264 mp4 (+ AAC mono) of in-memory frames and samples, written atomically by the
    engine's VideoWriter at exactly ``fps`` and ``sr``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames_bgr[0].shape[:2]
    track = None
    if audio is not None:
        track = engine_video.AudioTrack(np.clip(np.asarray(audio, np.float32), -1, 1).reshape(1, -1), sr)
    settings = engine_video.EncodeSettings(crf=crf, preset="veryfast")
    rate = Fraction(fps).limit_denominator(1001)
    with engine_video.VideoWriter(path, w, h, rate, track, settings) as writer:
        for img in frames_bgr:
            writer.write(img)
    return path
