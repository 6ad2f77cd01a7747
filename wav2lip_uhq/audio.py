"""Audio loading and the Wav2Lip mel spectrogram (bit-compatible with upstream).

The mel spectrogram is defined here once; the training subpackage imports it.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN, FMAX = 55, 7600
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100
REF_LEVEL_DB = 20
MAX_ABS = 4.0
MEL_STEP = 16  # mel columns per window given to the generator (0.2 s)
MEL_FPS = SAMPLE_RATE / HOP  # 80 mel columns per second


def load_audio(path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of any file FFmpeg reads to mono float32 at ``sr``.

    Raises InputError naming the file when it cannot be read, has no audio, or is silent/empty.
    """
    from .video import read_audio_track  # PyAV lives there

    return check_speech(read_audio_track(path).mono(sr), path, sr)


def check_speech(wav: np.ndarray, path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Reject audio that cannot drive a lip sync: empty, shorter than 0.2 s, or all silence."""
    if wav.size < sr * MEL_STEP / MEL_FPS:
        raise InputError(
            f"{path}: the audio is empty or too short ({wav.size / sr:.3f} s; at least 0.2 s needed)"
        )
    if not np.any(np.abs(wav) > 1e-4):
        raise InputError(f"{path}: the audio is silent (no sample above -80 dBFS)")
    return wav


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


@functools.lru_cache(maxsize=4)
def mel_filterbank(sr: int = SAMPLE_RATE) -> np.ndarray:
    """(80, 401) triangular Slaney-normalised filters, 55..7600 Hz (librosa's ``filters.mel`` defaults)."""
    fft_freqs = np.linspace(0, sr / 2, 1 + N_FFT // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def preemphasis(wav: np.ndarray, k: float = PREEMPHASIS) -> np.ndarray:
    out = np.empty(wav.shape, dtype=np.float32)
    out[0] = wav[0]
    out[1:] = wav[1:] - k * wav[:-1]
    return out


def stft_magnitude(wav: np.ndarray) -> np.ndarray:
    """|STFT|, Hann 800 / hop 200, centred with reflect padding (librosa 0.7's behaviour)."""
    pad = N_FFT // 2
    if wav.size <= pad:
        raise InputError(f"the audio is too short for a spectrogram ({wav.size} samples)")
    padded = np.pad(wav, pad, mode="reflect")
    n_frames = 1 + (padded.size - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)).astype(np.float32)  # periodic Hann
    return np.abs(np.fft.rfft(frames * window, axis=1)).T.astype(np.float32)  # (401, T)


def melspectrogram(wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Upstream Wav2Lip's normalised log-mel spectrogram: float32 (80, 1 + len // 200) in [-4, 4]."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError("melspectrogram expects mono audio")
    mel = mel_filterbank(sr) @ stft_magnitude(preemphasis(wav))
    db = 20.0 * np.log10(np.maximum(10 ** (MIN_LEVEL_DB / 20), mel)) - REF_LEVEL_DB
    norm = (2 * MAX_ABS) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS
    mel = np.clip(norm, -MAX_ABS, MAX_ABS).astype(np.float32)
    if np.isnan(mel).any():
        raise InputError("the mel spectrogram contains NaN (add a little noise to synthetic audio)")
    return mel


def mel_window_starts(n_mel_frames: int, fps: float) -> list[int]:
    """Start column of the 16-column mel window for each output frame, as upstream inference.

    Frame i starts at int(i * 80 / fps); the first window that would run past the end is
    replaced by the last 16 columns and ends the list. Its length is the output frame count.
    """
    if n_mel_frames < MEL_STEP:
        raise InputError(
            f"the audio is too short: {n_mel_frames} mel frames, at least {MEL_STEP} needed (0.2 s)"
        )
    starts = []
    i = 0
    step = MEL_FPS / fps
    while True:
        start = int(i * step)
        if start + MEL_STEP > n_mel_frames:
            starts.append(n_mel_frames - MEL_STEP)
            return starts
        starts.append(start)
        i += 1


def mel_windows(mel: np.ndarray, fps: float) -> np.ndarray:
    """(N, 80, 16) windows, one per output frame (a strided view, no copy)."""
    starts = np.asarray(mel_window_starts(mel.shape[1], fps))
    view = np.lib.stride_tricks.sliding_window_view(mel, MEL_STEP, axis=1)  # (80, T-15, 16)
    return view[:, starts].transpose(1, 0, 2)
