"""On-disk cache of expensive per-video results (face detections), keyed by content.

Entries are written atomically and validated on read; a corrupt entry is discarded and
recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get("WAV2LIP_UHQ_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wav2lip-uhq"


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """BLAKE2b of the file's bytes: the identity of an input, whatever its name."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


class DetectionCache:
    """Raw per-frame face detections, stored as ``<dir>/detections/<key>.npz``."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory) / "detections"

    @staticmethod
    def key(content_digest: str, settings: dict) -> str:
        blob = json.dumps(
            {"v": CACHE_VERSION, "content": content_digest, "settings": settings}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def load(self, key: str, min_frames: int) -> list[np.ndarray] | None:
        """The detections if an entry exists, is intact, and covers ``min_frames`` frames."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                counts = data["counts"].astype(np.int64)
                boxes = data["boxes"].astype(np.float32)
            if meta.get("key") != key or counts.sum() != len(boxes) or boxes.ndim != 2 or boxes.shape[1] != 5:
                raise ValueError("inconsistent entry")
        except Exception as exc:  # any damage: drop the entry and detect again
            log.warning("discarding damaged detection cache %s (%s)", path, exc)
            path.unlink(missing_ok=True)
            return None
        if len(counts) < min_frames:
            return None
        return list(np.split(boxes, np.cumsum(counts)[:-1])) if len(counts) else []

    def save(self, key: str, detections: list[np.ndarray]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        counts = np.array([len(d) for d in detections], dtype=np.int64)
        boxes = (
            np.concatenate([np.asarray(d, np.float32).reshape(-1, 5) for d in detections])
            if detections
            else np.zeros((0, 5), np.float32)
        )
        tmp = self.dir / f".{key}.{uuid.uuid4().hex[:8]}.tmp.npz"
        try:
            np.savez(tmp, counts=counts, boxes=boxes, meta=np.array(json.dumps({"key": key})))
            os.replace(tmp, self._path(key))
        except OSError as exc:
            log.warning("could not write the detection cache (%s); continuing without it", exc)
        finally:
            tmp.unlink(missing_ok=True)
