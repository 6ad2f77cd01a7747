"""The mel spectrogram and its per-frame windows equal upstream's; audio loads from any container."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from wav2lip_uhq.audio import load_audio, mel_filterbank, mel_window_starts, mel_windows, melspectrogram
from wav2lip_uhq.errors import InputError


def test_mel_matches_upstream_golden(reference):
    mel = melspectrogram(load_audio(reference / "speech_16k.wav"))
    golden = np.load(reference / "mel_golden.npy")
    assert mel.shape == golden.shape == (80, 525)
    assert np.abs(mel - golden).max() <= 1e-4


def test_mel_filterbank_equals_librosa():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    np.testing.assert_allclose(mel_filterbank(), ref, atol=1e-7)


@pytest.mark.parametrize("fps", ["25", "30"])
def test_mel_windows_match_upstream(reference, fps):
    chunks = json.loads((reference / "mel_chunks.json").read_text())
    assert mel_window_starts(chunks["mel_frames"], float(fps)) == chunks["chunk_starts"][fps]
    mel = np.load(reference / "mel_golden.npy")
    windows = mel_windows(mel, float(fps))
    starts = chunks["chunk_starts"][fps]
    assert windows.shape == (len(starts), 80, 16)
    np.testing.assert_array_equal(windows[-1], mel[:, starts[-1] : starts[-1] + 16])


def _encode_audio(path, samples, rate, codec, fmt):
    import av

    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "stereo"
        pos = 0
        stereo = np.stack([samples, samples]).astype(np.float32)
        step = 1152 if codec == "libmp3lame" else 1024
        while pos < stereo.shape[1]:
            chunk = np.ascontiguousarray(stereo[:, pos : pos + step])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = pos
            frame.time_base = Fraction(1, rate)
            pos += chunk.shape[1]
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)


@pytest.mark.parametrize("codec, fmt, suffix", [("aac", "mp4", ".m4a"), ("flac", "flac", ".flac")])
def test_compressed_and_resampled_audio_gives_the_same_mel(reference, tmp_path, codec, fmt, suffix):
    """44.1 kHz stereo in another container: resampled to 16 kHz mono, the mel stays close."""
    from scipy.signal import resample_poly

    wav16 = load_audio(reference / "speech_16k.wav")
    wav44 = resample_poly(wav16, 441, 160).astype(np.float32)
    path = tmp_path / f"speech{suffix}"
    _encode_audio(path, wav44, 44100, codec, fmt)
    loaded = load_audio(path)
    assert abs(len(loaded) - len(wav16)) < 16000 * 0.06  # AAC priming adds a few ms
    a, b = melspectrogram(wav16), melspectrogram(loaded[: len(wav16)])
    n = min(a.shape[1], b.shape[1])
    if codec == "flac":
        assert np.abs(a[:, :n] - b[:, :n]).mean() < 0.05
    else:
        assert np.corrcoef(a[:, 40:n - 40].ravel(), b[:, 40:n - 40].ravel())[0, 1] > 0.9


def test_short_audio_is_rejected(tmp_path):
    import soundfile as sf

    path = tmp_path / "blip.wav"
    sf.write(path, np.random.default_rng(0).normal(size=800).astype(np.float32) * 0.1, 16000)
    with pytest.raises(InputError, match="blip.wav.*too short"):
        load_audio(path)
