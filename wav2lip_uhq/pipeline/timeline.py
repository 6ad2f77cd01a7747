"""Speakers on one output timeline: which face says what, when, and the audio the output carries.

Each speaker's speech is laid on a waveform as long as the output (its "timeline"): zeros, with
the speech copied into each of its ranges (after the delay). The generator's features of that
waveform are per output frame by construction. A frame outside the speaker's ranges passes
through for its face; a frame inside them without speech (before the delay, after the speech
ended) passes through too, unless ``--silence close`` (the mouth closes).

Without ranges the output covers the longest speech (the video loops as today); with ranges it
is the video's own length, and its audio is the video's own outside the ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import audio as audio_mod
from ..config import RunConfig
from ..errors import InputError
from ..generators import Generator
from ..speakers import TimeRange, format_ranges, resolve_ranges
from ..video import AudioTrack, MediaInfo, read_audio_track, resample
from .audio_prep import RunAudio, read_speech, silent_frames

SR = audio_mod.SAMPLE_RATE


@dataclass
class Voice:
    """One speaker: its face, its decoded speech and its ranges (output seconds, ends filled in)."""

    number: int  # 1: the run's own audio and --face-index
    face_index: int | None
    audio: Path
    track: AudioTrack
    wav: np.ndarray  # 16 kHz mono
    ranges: tuple[TimeRange, ...] = ()

    def spans(self, rate: int, delay: float, length: int) -> list[tuple[int, int, int]]:
        """(output start, speech start, samples) at ``rate``: where the speech is laid. ``length``:
        the speech's own length at ``rate``."""
        d = round(delay * rate)
        if not self.ranges:
            return [(d, 0, length)]
        out = []
        for r in self.ranges:
            a, b, o = round(r.start * rate) + d, round(r.end * rate), round(r.offset * rate)
            out.append((a, o, max(0, min(b - a, length - o))))
        return out


@dataclass(frozen=True)
class Plan:
    """The timeline's shape: ranged (the video's length) or not (the longest speech's)."""

    ranged: bool
    video_seconds: float  # 0 unless ranged
    delay: float
    samples: int = 0  # without ranges: the timeline's length at 16 kHz (the longest speech, delayed)

    @property
    def trivial(self) -> bool:
        return not self.ranged and not self.delay


def read_voices(config: RunConfig) -> list[Voice]:
    """Every speaker's audio, decoded once (errors name the file)."""
    voices = []
    for n, (audio, index, ranges) in enumerate(
            [(config.audio, config.faces.face_index, config.ranges)]
            + [(s.audio, s.face_index, s.ranges or config.ranges) for s in config.speakers], 1):
        track, wav = read_speech(audio)
        voices.append(Voice(n, index, audio, track, wav, ranges))
    return voices


def plan(config: RunConfig, info: MediaInfo, fps: float, voices: list[Voice]) -> tuple[Plan, list[Voice]]:
    """The timeline of a run, and the voices with their ranges' ends filled in (a voice without
    ranges in a ranged run: the whole video); bad ranges are one-line errors."""
    if not any(v.ranges for v in voices):
        return Plan(False, 0.0, config.delay, max(round(config.delay * SR) + len(v.wav) for v in voices)), voices
    if info.is_image:
        raise InputError(f"{config.face}: a still image has no time to choose ranges in; --range needs a video")
    seconds = (info.frame_count or round(info.duration * fps)) / fps
    where = str(config.face)
    resolved = [replace(v, ranges=resolve_ranges(v.ranges, seconds, config.delay, fps, where, f" of speaker {v.number}"))
                for v in voices]
    return Plan(True, seconds, config.delay), resolved


def frame_count(p: Plan, fps: float) -> int | None:
    """The output's frame count where the ranges fix it (the video's), else None."""
    return round(p.video_seconds * fps) if p.ranged else None


def _timeline(v: Voice, p: Plan, fps: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The 16 kHz timeline waveform and the (start, end) samples that hold speech."""
    spans = v.spans(SR, p.delay, len(v.wav))
    # ranged: a second more, so the last frames' windows see silence, not the end of the data
    total = round(p.video_seconds * SR) + SR if p.ranged else p.samples
    line = np.zeros(total, np.float32)
    speech = []
    for a, o, n in spans:
        line[a : a + n] = v.wav[o : o + n]
        speech.append((a, a + n))
    return line, speech


def _frames_in(spans: list[tuple[int, int]], n: int, fps: float, starting: bool) -> np.ndarray:
    """Bool per output frame: its samples [i, i+1) * SR / fps overlap a span of 16 kHz samples,
    or (``starting``) the frame starts inside it. Integer edges: no rounding at the borders."""
    edges = np.round(np.arange(n + 1) * SR / fps).astype(np.int64)
    lo, hi = edges[:-1], edges[1:]
    out = np.zeros(n, bool)
    for a, b in spans:
        out |= (lo >= a) & (lo < b) if starting else (hi > a) & (lo < b)
    return out


class _Head:
    """The first ``n`` frames of a longer feature sequence (a ranged run ends with the video)."""

    def __init__(self, features, n: int) -> None:
        self.features, self.n = features, n

    def __len__(self) -> int:
        return self.n

    def take(self, indices):
        return self.features.take(indices)

    def silenced(self, silent: np.ndarray):
        full = np.zeros(len(self.features), bool)
        full[: len(silent)] = silent
        return _Head(self.features.silenced(full), self.n)


def voice_audio(v: Voice, p: Plan, fps: float, generator: Generator, config: RunConfig, n: int | None) -> RunAudio:
    """A speaker's features, silence flags and pass-through frames on the run's timeline; ``n``: the
    output frame count when the ranges fix it, else the features' own."""
    comp, cover = config.composite, config.mode != "fast"
    # the longest voice, undelayed, is its own timeline (one speaker: exactly the run of old)
    line, speech = (v.wav, [(0, len(v.wav))]) if p.trivial and len(v.wav) == p.samples else _timeline(v, p, fps)
    features = generator.audio_features(line, fps, cover)
    n = len(features) if n is None else n
    if len(features) < n:
        raise InputError(f"{v.audio}: the speech gives {len(features)} frames, the run needs {n}")
    if len(features) > n:
        features = _Head(features, n)
    ranges = [(round(r.start * SR), round(r.end * SR)) for r in v.ranges]
    active = _frames_in(ranges, n, fps, True) if p.ranged else np.ones(n, bool)
    speaking = _frames_in([(a, b) for a, b in speech if b > a], n, fps, False)
    silent = np.zeros(n, bool)
    if comp.silence != "off":
        reference = active & speaking
        silent = silent_frames(line, n, fps, comp.silence_db, reference=None if reference.all() else reference)
    silent &= active  # outside the ranges the face passes through anyway
    passthrough = ~active
    if comp.silence == "close":
        silent |= active & ~speaking
        features = features.silenced(silent)
    else:
        passthrough |= ~speaking
    return RunAudio(v.track, line, fps, features, silent, passthrough)


def voice_audios(voices: list[Voice], p: Plan, fps: float, generator: Generator, config: RunConfig) -> list[RunAudio]:
    """Every speaker's ``RunAudio``, all as long as the output."""
    n = frame_count(p, fps)  # None: every timeline has the same length, so the same frame count
    return [voice_audio(v, p, fps, generator, config, n) for v in voices]


def _channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """Mono or stereo: mono is repeated, more channels are mixed down to one or cut to two."""
    if samples.shape[0] < channels:
        return np.repeat(samples[:1], channels, axis=0)
    return samples.mean(axis=0, keepdims=True) if channels == 1 else samples[:channels]


def _at_rate(track: AudioTrack, rate: int, channels: int) -> np.ndarray:
    samples = track.samples if track.sample_rate == rate else resample(track.samples, track.sample_rate, rate)
    return _channels(samples, channels)


def output_track(config: RunConfig, info: MediaInfo, voices: list[Voice], p: Plan) -> tuple[AudioTrack, list[str]]:
    """The output's audio and notes: the speakers' speech mixed on the timeline (scaled down where
    the sum would clip); with ranges the video's own audio outside them."""
    if p.trivial and len(voices) == 1:
        return voices[0].track, []
    rate = voices[0].track.sample_rate
    own = read_audio_track(config.face) if p.ranged and info.has_audio else None  # the video's, outside ranges
    tracks = [v.track for v in voices] + ([own] if own is not None else [])
    channels = min(2, max(t.samples.shape[0] for t in tracks))
    speeches = [_at_rate(v.track, rate, channels) for v in voices]
    placed = [v.spans(rate, p.delay, s.shape[1]) for v, s in zip(voices, speeches)]
    total = round(p.video_seconds * rate) if p.ranged else max(a + n for spans in placed for a, _, n in spans)
    mix = np.zeros((channels, total), np.float32)
    notes = []
    if p.ranged:
        if own is not None:
            samples = _at_rate(own, rate, channels)[:, :total]
            mix[:, : samples.shape[1]] = samples
        for v in voices:
            for r in v.ranges:
                mix[:, round(r.start * rate) : round(r.end * rate)] = 0.0  # the ranges carry the new speech
    for speech, spans in zip(speeches, placed):
        for a, o, n in spans:
            n = min(n, total - a)
            if n > 0:
                mix[:, a : a + n] += speech[:, o : o + n]
    peak = float(np.abs(mix).max()) if mix.size else 0.0
    if len(voices) > 1 and peak > 1.0:
        mix /= peak
        notes.append(f"the speakers' voices together would clip: the mix was scaled down by "
                     f"{20 * math.log10(peak):.1f} dB")
    return AudioTrack(mix, rate), notes


def describe(voices: list[Voice], p: Plan) -> list[str]:
    """What the summary says about speakers and ranges."""
    if len(voices) == 1 and not p.ranged:
        return []
    parts = []
    for v in voices:
        face = "the largest face" if v.face_index is None else f"face {v.face_index}"
        when = f" in {format_ranges(v.ranges)} s" if p.ranged else ""
        parts.append(f"speaker {v.number} ({v.audio.name}) moves {face}{when}")
    return ["; ".join(parts)]
