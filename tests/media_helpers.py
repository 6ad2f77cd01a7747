"""Media helpers shared by the tests (a plain module: importable from any test folder)."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import numpy as np

ASTRONAUT_FACE_BOX = (175, 60, 275, 180)  # the face in skimage's astronaut photo (x1, y1, x2, y2)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25, audio=None, lossless: bool = True) -> Path:
    from wav2lip_uhq.video import EncodeSettings, VideoWriter

    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, Fraction(fps), audio, EncodeSettings(lossless=lossless)) as writer:
        for f in frames:
            writer.write(f)
    return path


def moving_face_frames(n: int = 30, size: int = 320, step: int = 3) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """The astronaut's head moving right and down on a grey background; returns frames and offsets."""
    import skimage.data

    img = skimage.data.astronaut()[:, :, ::-1]
    head = img[20:260, 120:330]  # face with margin (240 x 210)
    frames, offsets = [], []
    for i in range(n):
        frame = np.full((size, size + 80, 3), 120, np.uint8)
        oy, ox = 20 + (i * step) // 3, 10 + i * step
        frame[oy : oy + head.shape[0], ox : ox + head.shape[1]] = head
        frames.append(frame)
        offsets.append((oy, ox))
    return frames, offsets


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
