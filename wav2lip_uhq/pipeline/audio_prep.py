"""Audio preparation shared by ``run`` and ``preview``: the same features for output frame N.

The speech is decoded once (the encoder muxes the track as it is); the generator turns the
16 kHz waveform into features per output frame; the voice-activity gate marks silent frames,
whose features become those of silence with ``--silence close``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import audio as audio_mod
from ..config import RunConfig
from ..faces.track import valid_runs
from ..generators import AudioFeatures, Generator
from ..video import AudioTrack, read_audio_track


@dataclass
class RunAudio:
    track: AudioTrack  # as decoded, for the encoder
    wav: np.ndarray  # 16 kHz mono
    fps: float
    features: AudioFeatures  # per output frame (silence substituted for --silence close)
    silent: np.ndarray  # bool per output frame
    passthrough: np.ndarray | None = None  # bool per output frame: the face is left as it is (no speech)

    def skipped(self, keep_silent: bool) -> np.ndarray:
        """The frames the generator does not run on: pass-through, and silent ones with ``--silence keep``."""
        skip = np.zeros(self.frames, bool) if self.passthrough is None else self.passthrough
        return skip | self.silent if keep_silent else skip

    @property
    def frames(self) -> int:
        """The number of output frames."""
        return len(self.features)


def read_speech(path: Path) -> tuple[AudioTrack, np.ndarray]:
    """The audio track and its 16 kHz mono speech (errors name the file)."""
    track = read_audio_track(path)
    return track, audio_mod.check_speech(track.mono(audio_mod.SAMPLE_RATE), path)


def frame_audio(track: AudioTrack, wav: np.ndarray, fps: float, generator: Generator, config: RunConfig) -> RunAudio:
    """Per-output-frame features and silence flags, exactly as a run uses them."""
    features = generator.audio_features(wav, fps, cover=config.mode != "fast")
    silent = np.zeros(len(features), bool)
    comp = config.composite
    if comp.silence != "off":
        silent = silent_frames(wav, len(features), fps, comp.silence_db)
        if comp.silence == "close":
            features = features.silenced(silent)
    return RunAudio(track, wav, fps, features, silent)


def silent_frames(
    wav: np.ndarray, n_frames: int, fps: float, relative_db: float = -35.0, min_run: int = 3,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean per output frame: the audio under it is silent (voice-activity gate).

    A frame is silent when its RMS is ``relative_db`` below the clip's speech level (95th
    percentile of frame levels) or under -60 dBFS; runs shorter than ``min_run`` frames
    (gaps between words) do not count, so the mouth does not flutter. ``reference`` (bool per
    frame): the frames whose levels set the speech level (a timeline's ranges, not its zeros).
    """
    sr = audio_mod.SAMPLE_RATE
    edges = (np.arange(n_frames + 1) * sr / fps).astype(np.int64)
    levels = np.empty(n_frames)
    for i in range(n_frames):
        chunk = wav[edges[i] : max(edges[i + 1], edges[i] + 1)]
        rms = np.sqrt(np.mean(chunk.astype(np.float64) ** 2)) if chunk.size else 0.0
        levels[i] = 20 * np.log10(max(rms, 1e-6))
    ref = levels if reference is None or not reference.any() else levels[reference]
    speech = np.percentile(ref, 95)
    silent = (levels < speech + relative_db) | (levels < -60.0)
    out = np.zeros(n_frames, bool)
    for i, j in valid_runs(silent):
        if j - i >= min_run:
            out[i:j] = True
    return out
