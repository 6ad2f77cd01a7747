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
    from . import video  # PyAV lives there; imported lazily

    path = Path(path)
    wav = video.decode_audio(path, sr)
    if wav.size < sr // 25:
        raise InputError(f"{path}: the audio is empty or shorter than one video frame ({wav.size / sr:.3f} s)")
    if not np.any(np.abs(wav) > 1e-4):
        raise InputError(f"{path}: the audio is silent (every sample is zero)")
    return wav


@functools.lru_cache(maxsize=4)
def _mel_basis(sr: int) -> np.ndarray:
    import librosa

    # Keyword arguments: librosa >= 0.10 rejects the positional form upstream used.
    return librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX).astype(np.float32)


def preemphasis(wav: np.ndarray, k: float = PREEMPHASIS) -> np.ndarray:
    out = np.empty_like(wav, dtype=np.float64)
    out[0] = wav[0]
    out[1:] = wav[1:] - k * wav[:-1].astype(np.float64)
    return out


def melspectrogram(wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Upstream Wav2Lip's normalised log-mel spectrogram: float32 (80, 1 + len // 200) in [-4, 4]."""
    import librosa

    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError("melspectrogram expects mono audio")
    stft = librosa.stft(
        y=preemphasis(wav).astype(np.float32),
        n_fft=N_FFT,
        hop_length=HOP,
        win_length=WIN,
        center=True,
        pad_mode="reflect",  # librosa 0.7 behaviour; >= 0.10 defaults to constant
    )
    mel = _mel_basis(sr) @ np.abs(stft)
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
        raise InputError(f"the audio is too short: {n_mel_frames} mel frames, at least {MEL_STEP} needed (0.2 s)")
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
