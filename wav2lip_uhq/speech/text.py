"""Splitting long text into sentences, each spoken on its own with a pause after it."""

from __future__ import annotations

import re

# A sentence ends at . ! ? or an ellipsis followed by a space, at CJK full stops, or at a line break.
_END = re.compile(r"(?<=[.!?\u2026])\s+|(?<=[.!?\u2026][\"'\u201d\u2019)\]])\s+|(?<=[\u3002\uff01\uff1f])|\n+")
_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "prof.", "e.g.", "i.e.", "vs.", "etc.", "no."}
MAX_CHARS = 400  # a longer "sentence" is split at commas, then at spaces: engines drift on long input


def _ends_in_abbreviation(chunk: str) -> bool:
    words = chunk.split()
    return bool(words) and words[-1].lower() in _ABBREVIATIONS


def _split_long(sentence: str, limit: int) -> list[str]:
    if len(sentence) <= limit:
        return [sentence]
    out: list[str] = []
    current = ""
    for piece in re.split(r"(?<=[,;:])\s+|\s+", sentence):
        if current and len(current) + 1 + len(piece) > limit:
            out.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        out.append(current)
    return out


def split_sentences(text: str, limit: int = MAX_CHARS) -> list[str]:
    """The sentences of ``text`` in order, stripped, empty ones dropped; ``Dr. Who`` stays whole."""
    parts: list[str] = []
    pending = ""
    for chunk in _END.split(text.replace("\r\n", "\n")):
        chunk = chunk.strip()
        if not chunk:
            continue
        pending = f"{pending} {chunk}" if pending else chunk
        if not _ends_in_abbreviation(pending):
            parts.append(pending)
            pending = ""
    if pending:
        parts.append(pending)
    return [piece for sentence in parts for piece in _split_long(sentence, limit)]
