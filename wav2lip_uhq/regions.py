"""Square face regions and crops that may extend past the frame (shared by restoration,
parsing and refinement, which all run on square face crops)."""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]


def square_around(box: Box, margin: float) -> Box:
    """The square around ``box``: its longer side plus ``margin`` of it on each side. May leave the frame."""
    x1, y1, x2, y2 = box
    side = round(max(x2 - x1, y2 - y1) * (1 + 2 * margin))
    sx, sy = round((x1 + x2 - side) / 2), round((y1 + y2 - side) / 2)
    return sx, sy, sx + side, sy + side


def crop_padded(frame: np.ndarray, box: Box) -> np.ndarray:
    """``frame[box]`` with the parts outside the frame filled by replicating its border, so a face
    at the frame's edge stays square and undistorted."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = box
    inner = frame[max(y1, 0) : min(y2, h), max(x1, 0) : min(x2, w)]
    pads = (max(-y1, 0), max(y2 - h, 0), max(-x1, 0), max(x2 - w, 0))
    return cv2.copyMakeBorder(inner, *pads, cv2.BORDER_REPLICATE) if any(pads) else inner.copy()
