"""Offline synthetic talking-face dataset in the LRS2 raw layout (no downloads).

Each clip is a crop of a real photo (``skimage.data.astronaut``) whose mouth region is
redrawn every frame with an opening that follows the loudness envelope of the audio, so
audio and lips are genuinely in sync (or shifted by a known number of frames for tests of
the sync-correction sign convention). "Speakers" differ by crop position, brightness, tint
and mirroring; audio is syllable-like voiced bursts (or segments of a real speech file).

Layout: ``root/<speaker>/<00001>.mp4`` (LRS2 ``main``: one folder per source video).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wav2lip_uhq.audio import SAMPLE_RATE

from .media import write_video

log = logging.getLogger(__name__)

# Astronaut photo: face box (x1, y1, x2, y2) = (175, 76, 265, 166); lips span x 201..246, y 139..156.
_MOUTH_XY = (223.5, 147.5)
_BASE_CROP = (140, 36, 300, 196)  # x1, y1, x2, y2: 160x160 around the face


@dataclass
class ClipSpec:
    speaker: int
    clip: int
    seconds: float
    fps: float = 25.0
    sr: int = SAMPLE_RATE
    shift_frames: int = 0  # the mouth lags the audio by this many frames (video frame v shows audio frame v - shift)


def _syllable_audio(rng: np.random.Generator, n: int, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Voiced bursts with silences; returns (wav, amplitude envelope) both of length n."""
    env = np.zeros(n, np.float32)
    t = int(rng.uniform(0.05, 0.2) * sr)
    while t < n:
        dur = int(rng.uniform(0.12, 0.35) * sr)
        amp = rng.uniform(0.5, 1.0)
        seg = np.hanning(dur).astype(np.float32) ** 0.7 * amp
        end = min(n, t + dur)
        env[t:end] = seg[: end - t]
        t = end + int(rng.uniform(0.06, 0.3) * sr)
    time = np.arange(n) / sr
    f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * time))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    noise = rng.standard_normal(n) * 0.3
    wav = (voiced + noise) * env * 0.25 + rng.standard_normal(n) * 1e-3
    return wav.astype(np.float32), env


def _envelope_from_speech(wav: np.ndarray, sr: int) -> np.ndarray:
    frame = int(0.02 * sr)
    power = np.convolve(wav.astype(np.float64) ** 2, np.ones(frame) / frame, mode="same")
    env = np.sqrt(power)
    return (env / (np.percentile(env, 98) + 1e-8)).clip(0, 1).astype(np.float32)


def render_clip(spec: ClipSpec, photo: np.ndarray, speech: np.ndarray | None = None, seed: int = 0):
    """Frames (BGR, 160x160) and 16 kHz-or-``spec.sr`` audio for one clip."""
    rng = np.random.default_rng([seed, spec.speaker, spec.clip])
    spk = np.random.default_rng([seed, spec.speaker])
    n_frames = round(spec.seconds * spec.fps)
    n = round(spec.seconds * spec.sr)
    if speech is None:
        wav, env = _syllable_audio(rng, n, spec.sr)
    else:
        start = int(rng.integers(0, max(1, len(speech) - n)))
        wav = np.resize(speech[start : start + n], n).astype(np.float32)
        env = _envelope_from_speech(wav, spec.sr)

    # speaker identity
    dx, dy = spk.integers(-12, 13, size=2)
    gain = spk.uniform(0.85, 1.15)
    tint = spk.uniform(0.92, 1.08, size=3)
    mirror = bool(spk.integers(0, 2))
    lip_color = np.array([60, 50, 150]) * spk.uniform(0.85, 1.1)
    x1, y1, x2, y2 = _BASE_CROP
    x1, x2, y1, y2 = x1 + dx, x2 + dx, y1 + dy, y2 + dy
    base = photo[y1:y2, x1:x2, ::-1].astype(np.float32)  # RGB -> BGR
    base = np.clip(base * gain * tint, 0, 255).astype(np.uint8)
    mx, my = _MOUTH_XY[0] - x1, _MOUTH_XY[1] - y1

    frames = []
    for i in range(n_frames):
        # opening = mean envelope over the frame's interval, audio shifted by shift_frames
        t0 = (i - spec.shift_frames) / spec.fps
        a, b = int(max(0, t0) * spec.sr), int(max(0, t0 + 1 / spec.fps) * spec.sr)
        opening = float(env[a:b].mean()) if b > a and a < n else 0.0
        img = base.copy()
        jitter = rng.normal(0, 0.6, size=2)
        cx, cy = mx + jitter[0], my + jitter[1]
        half_w = 22 + 3 * opening
        cv2.ellipse(img, (int(cx), int(cy)), (int(half_w), 7), 0, 0, 360, lip_color.tolist(), -1, cv2.LINE_AA)
        if opening > 0.05:
            h = 1 + 13 * opening
            cv2.ellipse(img, (int(cx), int(cy + h / 3)), (int(half_w - 5), int(h)), 0, 0, 360,
                        (25, 15, 40), -1, cv2.LINE_AA)
            if opening > 0.3:
                cv2.rectangle(img, (int(cx - half_w + 10), int(cy - 2)), (int(cx + half_w - 10), int(cy + 2)),
                              (235, 235, 235), -1)
        if mirror:
            img = img[:, ::-1]
        frames.append(np.ascontiguousarray(img))
    return frames, wav


def make_dataset(
    root: str | Path,
    speakers: int = 4,
    clips_per_speaker: int = 3,
    seconds: float = 3.0,
    fps: float = 25.0,
    sr: int = SAMPLE_RATE,
    seed: int = 0,
    speech_path: str | Path | None = None,
    shift_frames: dict[tuple[int, int], int] | None = None,
) -> list[Path]:
    """Write ``root/<speaker>/<clip>.mp4`` files; returns their paths.

    ``shift_frames`` maps (speaker, clip) to a known audio delay in frames.
    """
    from skimage.data import astronaut

    photo = astronaut()
    speech = None
    if speech_path is not None:
        from wav2lip_uhq.audio import load_audio

        speech = load_audio(speech_path, sr)
    root = Path(root)
    paths = []
    for s in range(speakers):
        for c in range(clips_per_speaker):
            spec = ClipSpec(s, c, seconds, fps, sr, (shift_frames or {}).get((s, c), 0))
            frames, wav = render_clip(spec, photo, speech, seed)
            path = root / f"spk{s:04d}" / f"{c + 1:05d}.mp4"
            write_video(path, frames, fps, wav, sr)
            paths.append(path)
    log.info("wrote %d synthetic clips under %s", len(paths), root)
    return paths
