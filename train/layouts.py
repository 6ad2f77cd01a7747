"""Dataset layouts -> the clips to preprocess (video, optional separate audio, optional time range).

Every layout ends in LRS2's preprocessed layout ``<folder>/<id>/``; the speaker of each clip is
recorded in its ``.done.json`` so the train/val/test split is speaker-disjoint.

=========  ===================================================  =====================  ==========
layout     raw files                                            entry (folder/id)       speaker
=========  ===================================================  =====================  ==========
lrs2       ``main/<video>/<id>.mp4`` (pretrain likewise)        ``<video>/<id>``        source video
folder     any nested folder of videos                          path without suffix     top folder
cmlr       ``video/<s>/<date>/<id>.mp4`` + ``audio/<s>/<date>   ``<s>/<date>_<id>``     ``<s>``
           /<id>.wav``
grid       ``<s>/<id>.mpg`` (+ ``--audio-root`` ``<s>/<id>.wav``  ``<s>/<id>``          ``<s>``
           when the videos have no sound)
hdtf       ``<name>.mp4`` + ``--time-ranges`` files with lines   ``<name>/<k>``          ``<name>`` without
           ``<name>.mp4 mm:ss-mm:ss ...``                                               its ``_NNN`` index
=========  ===================================================  =====================  ==========
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv")
LAYOUTS = ("lrs2", "folder", "cmlr", "grid", "hdtf")


@dataclass(frozen=True)
class Clip:
    """One output folder: frames of ``video`` in [start, end) seconds, audio from ``audio`` (else the video)."""

    video: Path
    entry: str
    speaker: str
    audio: Path | None = None
    start: float | None = None
    end: float | None = None

    @property
    def name(self) -> str:
        """How reports name the clip: the source file, with its time range."""
        span = f" [{self.start:.2f}-{self.end:.2f} s]" if self.start is not None else ""
        return f"{self.video}{span}"


def find_videos(root: str | Path) -> list[Path]:
    """Every video file below ``root`` (any depth), sorted for a stable sharding."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file()
                  and not p.name.startswith("."))


def _folder(root: Path, speaker_level: str) -> list[Clip]:
    """``speaker_level`` "parent": the video's folder (LRS2: its source video); "top": the first folder
    below the root (VoxCeleb ``id00012/...``, MEAD ``M003/...``); a flat folder: each video its own."""
    out = []
    for v in find_videos(root):
        rel = v.relative_to(root).with_suffix("")
        if rel.parent == Path("."):
            speaker = rel.name
        else:
            speaker = rel.parent.as_posix() if speaker_level == "parent" else rel.parts[0]
        out.append(Clip(v, rel.as_posix(), speaker))
    return out


def _cmlr(root: Path) -> list[Clip]:
    vroot, aroot = root / "video", root / "audio"
    if not vroot.is_dir():
        raise ValueError(f"{root}: no video/ folder (CMLR layout: video/<speaker>/<date>/<id>.mp4, audio/...)")
    out = []
    for v in find_videos(vroot):
        rel = v.relative_to(vroot)
        if len(rel.parts) != 3:
            raise ValueError(f"{v}: not video/<speaker>/<date>/<id>.mp4 (CMLR layout)")
        speaker, date, _ = rel.parts
        wav = (aroot / rel).with_suffix(".wav")
        out.append(Clip(v, f"{speaker}/{date}_{v.stem}", speaker, wav if wav.is_file() else None))
    return out


def _grid(root: Path, audio_root: Path | None) -> list[Clip]:
    out = []
    for v in find_videos(root):
        rel = v.relative_to(root)
        if len(rel.parts) < 2:
            raise ValueError(f"{v}: not <speaker>/<id>.mpg (GRID layout)")
        speaker = rel.parts[-2]
        wav = audio_root / speaker / f"{v.stem}.wav" if audio_root else None
        if wav is not None and not wav.is_file():
            raise ValueError(f"{wav}: missing (GRID audio for {v}; --audio-root)")
        out.append(Clip(v, f"{speaker}/{v.stem}", speaker, wav))
    return out


_SPAN = re.compile(r"^(\d+(?::\d+){0,2}(?:\.\d+)?)-(\d+(?::\d+){0,2}(?:\.\d+)?)$")


def _seconds(text: str) -> float:
    value = 0.0
    for part in text.split(":"):
        value = value * 60 + float(part)
    return value


def read_time_ranges(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """HDTF's ``*_annotion_time.txt`` (a file, or a folder of them): ``<video> <start>-<end> ...`` per line,
    times as ``ss``, ``mm:ss`` or ``hh:mm:ss``. Keys are video stems."""
    path = Path(path)
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise ValueError(f"{path}: no time-range files (--time-ranges)")
    ranges: dict[str, list[tuple[float, float]]] = {}
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            spans = []
            for p in parts[1:]:
                m = _SPAN.match(p)
                if not m or _seconds(m.group(2)) <= _seconds(m.group(1)):
                    raise ValueError(f"{f}:{n}: {p!r} is not a time range start-end (mm:ss-mm:ss)")
                spans.append((_seconds(m.group(1)), _seconds(m.group(2))))
            ranges.setdefault(Path(parts[0]).stem, []).extend(spans)
    return ranges


def _chunks(start: float, end: float, max_seconds: float | None) -> list[tuple[float, float]]:
    if not max_seconds or end - start <= max_seconds:
        return [(start, end)]
    n = int(-(-(end - start) // max_seconds))
    step = (end - start) / n
    return [(start + i * step, start + (i + 1) * step) for i in range(n)]


def _hdtf(root: Path, time_ranges: str | Path | None, max_seconds: float | None) -> list[Clip]:
    if time_ranges is None:
        raise ValueError("the hdtf layout needs --time-ranges (HDTF's *_annotion_time.txt files)")
    ranges = read_time_ranges(time_ranges)
    out = []
    for v in find_videos(root):
        if v.stem not in ranges:
            continue  # HDTF lists the usable videos; others are not part of it
        speaker = re.sub(r"_\d+$", "", v.stem)
        k = 0
        for start, end in ranges[v.stem]:
            for a, b in _chunks(start, end, max_seconds):
                out.append(Clip(v, f"{v.stem}/{k:05d}", speaker, None, a, b))
                k += 1
    if not out:
        raise ValueError(f"{root}: none of its videos is named in {time_ranges}")
    return out


def list_clips(layout: str, data_root: str | Path, audio_root: str | Path | None = None,
               time_ranges: str | Path | None = None, max_seconds: float | None = None) -> list[Clip]:
    """The clips of a dataset in ``layout`` (see the module table), sorted by entry."""
    root = Path(data_root)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder (--data-root)")
    if layout in ("lrs2", "folder"):
        clips = _folder(root, "parent" if layout == "lrs2" else "top")
    elif layout == "cmlr":
        clips = _cmlr(root)
    elif layout == "grid":
        clips = _grid(root, Path(audio_root) if audio_root else None)
    elif layout == "hdtf":
        clips = _hdtf(root, time_ranges, max_seconds)
    else:
        raise ValueError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    if layout != "hdtf" and max_seconds:
        raise ValueError("--max-seconds cuts time ranges: only with --layout hdtf")
    if not clips:
        raise ValueError(f"{root}: no video files ({', '.join(VIDEO_EXTS)}) in this folder or below")
    return sorted(clips, key=lambda c: c.entry)
