"""Writing files so that a reader never sees half of one: a temporary name beside the target,
then an atomic rename. A crash leaves the old file (or none), never a truncated one."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


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
