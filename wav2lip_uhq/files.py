"""Writing files so that a reader never sees half of one: a temporary name beside the target,
then an atomic rename. A crash leaves the old file (or none), never a truncated one."""

from __future__ import annotations

import os
from collections.abc import Mapping
import uuid
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, data: bytes | str, *, parents: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; ``parents`` creates missing folders."""
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def file_path(value: Any) -> Path | None:
    """A path from what gradio gives for a file: str, tempfile (3.x ``.name``), dict, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, os.PathLike)):
        pass
    elif isinstance(value, Mapping):  # gradio 4+ FileData as a dict
        value = value.get("path") or value.get("name")
    elif not isinstance(value, (list, tuple)):  # gradio 3.x tempfile wrapper: the path is .name
        value = getattr(value, "name", value)
    if isinstance(value, (list, tuple)):  # gr.Video output-style (video, subtitles)
        value = value[0] if value else None
    return Path(str(value)) if value else None
