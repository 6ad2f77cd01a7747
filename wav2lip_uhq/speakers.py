"""Several speakers and time ranges: the values of ``--speaker``, ``--range`` and ``--delay``.

A time is seconds (``12.5``) or ``m:ss.s`` / ``h:mm:ss``. A range is ``START-END[@OFFSET]``: output
seconds [START, END) are lip-synced to the speech from OFFSET on (END empty: to the video's end).
A speaker is ``INDEX:AUDIO[:RANGES]``: face INDEX (from the left, as ``--face-index`` counts; -1:
the largest) speaks AUDIO, in its own ranges or the run's. Pure Python, no numpy: the option
schema parses with it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_FACE_INDEX = 64
MAX_SPEAKERS = 4  # extra speakers, beside the run's own audio


class RangeError(ValueError):
    """A time, range or speaker that cannot be read; the message names it."""


@dataclass(frozen=True)
class TimeRange:
    """Output seconds [start, end) lip-synced to the speech from ``offset`` on."""

    start: float
    end: float | None = None  # None: to the end of the video
    offset: float = 0.0

    def __str__(self) -> str:
        text = f"{_fmt(self.start)}-{'' if self.end is None else _fmt(self.end)}"
        return text + (f"@{_fmt(self.offset)}" if self.offset else "")


@dataclass(frozen=True)
class Speaker:
    """One more voice: the face it moves and the speech it says (and when)."""

    audio: Path
    face_index: int | None = None  # None: the largest face
    ranges: tuple[TimeRange, ...] = ()  # empty: the run's ranges (or the whole run)


def _fmt(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def parse_seconds(text: Any, what: str) -> float:
    """``12.5``, ``1:05.5`` or ``1:02:03`` -> seconds (never negative)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        *whole, last = str(text).strip().split(":")
        if len(whole) > 2 or not all(w.isdigit() for w in whole) or not re.fullmatch(r"\d+(\.\d*)?|\.\d+", last):
            raise RangeError(f"{what}: {str(text)!r} is not a time (seconds, m:ss.s or h:mm:ss)")
        if whole and float(last) >= 60 or len(whole) == 2 and int(whole[1]) >= 60:
            raise RangeError(f"{what}: {text!r} has more than 59 seconds or minutes in a field")
        value = float(last) + sum(int(w) * 60 ** (len(whole) - k) for k, w in enumerate(whole))
    if not 0 <= value < float("inf"):
        raise RangeError(f"{what}: {text!r} is not a time from 0 on")
    return value


def _one_range(item: Any, what: str) -> TimeRange:
    if isinstance(item, TimeRange):
        return item
    if isinstance(item, Mapping):
        unknown = set(item) - {"start", "end", "offset"}
        if unknown or "start" not in item:
            raise RangeError(f"{what}: {dict(item)!r} needs start (and end, offset), nothing else")
        end = item.get("end")
        return _checked(parse_seconds(item["start"], what), None if end in (None, "") else parse_seconds(end, what),
                        parse_seconds(item.get("offset") or 0, what), what)
    text = str(item).strip()
    span, _, offset = text.partition("@")
    start, dash, end = span.partition("-")
    if not dash or not start.strip():
        raise RangeError(f"{what}: {text!r} is not START-END[@OFFSET] (seconds or m:ss.s)")
    return _checked(parse_seconds(start, what), parse_seconds(end, what) if end.strip() else None,
                    parse_seconds(offset, what) if offset.strip() else 0.0, what)


def _checked(start: float, end: float | None, offset: float, what: str) -> TimeRange:
    r = TimeRange(start, end, offset)
    if end is not None and end <= start:
        raise RangeError(f"{what}: {r} ends before it starts")
    return r


def parse_ranges(raw: Any, what: str = "range") -> tuple[TimeRange, ...]:
    """Ranges from a text (comma or space separated), a list of texts or objects; in time order,
    none overlapping another."""
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, (str, Mapping, TimeRange)) else list(raw)
    ranges: list[TimeRange] = []
    for item in items:
        if isinstance(item, str):
            ranges += [_one_range(p, what) for p in re.split(r"[,\s;]+", item) if p]
        else:
            ranges.append(_one_range(item, what))
    ranges.sort(key=lambda r: r.start)
    for a, b in itertools.pairwise(ranges):
        if a.end is None or a.end > b.start:
            raise RangeError(f"{what}: {a} and {b} overlap")
    return tuple(ranges)


def format_ranges(ranges: tuple[TimeRange, ...]) -> str:
    return ", ".join(str(r) for r in ranges)


def _face_index(raw: Any, what: str) -> int | None:
    try:
        number = float(str(raw).strip()) if not isinstance(raw, (int, float)) or isinstance(raw, bool) else raw
        if isinstance(raw, bool) or number != int(number):
            raise ValueError
        value = int(number)
    except (ValueError, OverflowError):
        raise RangeError(f"{what}: face index {raw!r} is not a whole number") from None
    if not -1 <= value <= MAX_FACE_INDEX:
        raise RangeError(f"{what}: face index {value} must be -1 (the largest) or 0..{MAX_FACE_INDEX}")
    return None if value == -1 else value


def _split_speaker(text: str, what: str) -> tuple[str, str, str]:
    """``INDEX:AUDIO[:RANGES]``: the audio may hold ':' (a drive letter), the ranges too (m:ss)."""
    index, colon, rest = text.partition(":")
    if not colon or not rest.strip():
        raise RangeError(f"{what}: {text!r} is not INDEX:AUDIO[:RANGES]")
    cuts = [m.start() for m in re.finditer(":", rest)]
    for cut in cuts:  # the first split whose audio exists and whose tail reads as ranges
        if Path(rest[:cut]).expanduser().is_file():
            return index, rest[:cut], rest[cut + 1 :]
    if Path(rest).expanduser().is_file() or not cuts:
        return index, rest, ""
    for cut in cuts:  # no such file: split where the tail reads as ranges (the error names the audio)
        try:
            parse_ranges(rest[cut + 1 :], what)
            return index, rest[:cut], rest[cut + 1 :]
        except RangeError:
            continue
    return index, rest, ""


def parse_speaker(raw: Any, what: str = "speaker") -> Speaker:
    """A ``Speaker`` from ``INDEX:AUDIO[:RANGES]`` or ``{"face_index", "audio", "ranges"}``."""
    if isinstance(raw, Speaker):  # a library caller's: its audio may be a str, its ranges a text
        index, audio, ranges = -1 if raw.face_index is None else raw.face_index, raw.audio, raw.ranges
    elif isinstance(raw, Mapping):
        unknown = set(raw) - {"face_index", "audio", "ranges"}
        if unknown:
            raise RangeError(f"{what}: unknown field(s) {', '.join(sorted(unknown))} (face_index, audio, ranges)")
        index, audio, ranges = raw.get("face_index", -1), raw.get("audio"), raw.get("ranges") or ()
    elif isinstance(raw, str):
        index, audio, ranges = _split_speaker(raw.strip(), what)
    else:
        raise RangeError(f"{what}: {raw!r} is neither INDEX:AUDIO[:RANGES] nor an object")
    if audio is None or not str(audio).strip():
        raise RangeError(f"{what}: an audio file is required")
    return Speaker(Path(str(audio).strip()).expanduser(), _face_index(index, what), parse_ranges(ranges, what))


def parse_speakers(raw: Any, what: str = "speaker") -> tuple[Speaker, ...]:
    if raw is None or raw == "":
        return ()
    items = [raw] if isinstance(raw, (str, Mapping, Speaker)) else list(raw)
    if len(items) > MAX_SPEAKERS:
        raise RangeError(f"{what}: {len(items)} extra speakers; at most {MAX_SPEAKERS} beside the run's own audio")
    return tuple(parse_speaker(item, f"{what} {n}") for n, item in enumerate(items, 2))


def speaker_plain(s: Speaker) -> dict[str, Any]:
    """A speaker as JSON shows it (and the API takes it back)."""
    return {"face_index": -1 if s.face_index is None else s.face_index, "audio": str(s.audio),
            "ranges": format_ranges(s.ranges)}


def resolve_ranges(ranges: tuple[TimeRange, ...], seconds: float, delay: float, fps: float, where: str,
                   who: str) -> tuple[TimeRange, ...]:
    """Ranges with their ends filled in (None: the video's end), checked against a video of
    ``seconds``; ``InputError`` names the file (``where``) and the speaker (``who``)."""
    from .errors import InputError

    out = []
    for r in ranges or (TimeRange(0.0),):
        end = seconds if r.end is None else r.end
        if r.start >= seconds - 0.5 / fps or end > seconds + 0.5 / fps:
            raise InputError(f"{where}: range {r}{who} is beyond the video's end ({_fmt(seconds)} s)")
        end = min(end, seconds)
        if r.start + delay >= end:
            raise InputError(f"{where}: range {r}{who} is no longer than the {_fmt(delay)} s delay")
        out.append(TimeRange(r.start, end, r.offset))
    return tuple(out)


def check_timing(config: Any) -> None:
    """Before models load: ranges need a video and must lie inside it; every speaker's audio exists.
    One line naming the file (``InputError``)."""
    from .errors import InputError
    from .video import probe

    for n, s in enumerate(config.speakers, 2):
        if not s.audio.is_file():
            raise InputError(f"{s.audio}: speaker {n}'s audio file not found")
    ranged = [(n, r) for n, r in [(1, config.ranges)] + [(n, s.ranges) for n, s in enumerate(config.speakers, 2)]
              if r]
    if not ranged:
        return
    info = probe(config.face)
    if info.is_image:
        raise InputError(f"{config.face}: a still image has no time to choose ranges in; --range needs a video")
    seconds = (info.frame_count or round(info.duration * info.fps)) / info.fps
    for n, ranges in ranged:
        resolve_ranges(ranges, seconds, config.delay, info.fps, str(config.face), f" of speaker {n}")
