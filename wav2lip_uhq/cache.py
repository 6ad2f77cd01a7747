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


class ArrayCache:
    """Named numpy arrays per key, stored as ``<dir>/<kind>/<key>.npz`` (atomic, validated)."""

    def __init__(self, directory: str | Path, kind: str) -> None:
        self.dir = Path(directory) / kind

    @staticmethod
    def key(content_digest: str, settings: dict) -> str:
        blob = json.dumps(
            {"v": CACHE_VERSION, "content": content_digest, "settings": settings}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def load_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            if json.loads(str(arrays.pop("meta"))).get("key") != key:
                raise ValueError("entry written for another key")
            return arrays
        except Exception as exc:  # any damage: drop the entry and compute again
            log.warning("discarding damaged cache entry %s (%s)", path, exc)
            path.unlink(missing_ok=True)
            return None

    def save_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        tmp = self.dir / f".{key}.{uuid.uuid4().hex[:8]}.tmp.npz"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, meta=np.array(json.dumps({"key": key})), **arrays)
            os.replace(tmp, self._path(key))
        except OSError as exc:
            log.warning("could not write the cache (%s); continuing without it", exc)
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # the folder itself is unusable (already warned about)
                pass


class DetectionCache(ArrayCache):
    """Raw per-frame face detections (every face, with scores)."""

    def __init__(self, directory: str | Path) -> None:
        super().__init__(directory, "detections")

    def load(self, key: str, min_frames: int) -> list[np.ndarray] | None:
        """The detections if an entry exists, is intact, and covers ``min_frames`` frames."""
        arrays = self.load_arrays(key)
        if arrays is None:
            return None
        counts, boxes = arrays.get("counts"), arrays.get("boxes")
        if (
            counts is None
            or boxes is None
            or boxes.ndim != 2
            or boxes.shape[1] != 5
            or counts.sum() != len(boxes)
        ):
            log.warning("discarding inconsistent detection cache entry %s", key)
            self._path(key).unlink(missing_ok=True)
            return None
        if len(counts) < min_frames:
            return None
        return list(np.split(boxes.astype(np.float32), np.cumsum(counts)[:-1])) if len(counts) else []

    def save(self, key: str, detections: list[np.ndarray]) -> None:
        counts = np.array([len(d) for d in detections], dtype=np.int64)
        boxes = (
            np.concatenate([np.asarray(d, np.float32).reshape(-1, 5) for d in detections])
            if detections
            else np.zeros((0, 5), np.float32)
        )
        self.save_arrays(key, {"counts": counts, "boxes": boxes})


class LandmarkCache(ArrayCache):
    """Raw (unsmoothed) 68-point landmarks of the tracked face, (F, 68, 2), NaN without a face."""

    def __init__(self, directory: str | Path) -> None:
        super().__init__(directory, "landmarks")

    def load(self, key: str, min_frames: int) -> np.ndarray | None:
        arrays = self.load_arrays(key)
        points = None if arrays is None else arrays.get("points")
        if points is None or points.ndim != 3 or points.shape[1:] != (68, 2) or len(points) < min_frames:
            return None
        return points.astype(np.float32)

    def save(self, key: str, points: np.ndarray) -> None:
        self.save_arrays(key, {"points": np.asarray(points, np.float32)})
