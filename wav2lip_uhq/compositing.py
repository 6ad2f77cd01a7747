"""Putting the generated face back into the frame.

A compositor takes the frame, the generator's output for the face box (uint8 BGR at the
model's resolution) and the box, and returns the frame with the mouth replaced. Mask-based
compositors (landmark masks, colour matching, restoration) plug in through the same call.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np


class Compositor(Protocol):
    def __call__(
        self, frame: np.ndarray, generated: np.ndarray, box: tuple[int, int, int, int]
    ) -> np.ndarray:
        """``box`` is (x1, y1, x2, y2) in frame pixels; ``frame`` may be modified in place."""
        ...


def hard_paste(frame: np.ndarray, generated: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Upstream Wav2Lip: bilinear resize into the box and replace the whole rectangle."""
    x1, y1, x2, y2 = box
    frame[y1:y2, x1:x2] = cv2.resize(generated, (x2 - x1, y2 - y1))
    return frame


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def feather_mask(
    height: int, width: int, top: float = 0.42, ramp: float = 0.16, edge: float = 0.12
) -> np.ndarray:
    """(H, W) float32 weights for the lower face: 0 above ``top``, rising smoothly over ``ramp``
    of the box height, and fading to 0 at the left, right and bottom edges over ``edge``."""
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width
    wy = _smoothstep((ys - top) / ramp) * _smoothstep((1.0 - ys) / (edge * 0.6))
    wx = _smoothstep(xs / edge) * _smoothstep((1.0 - xs) / edge)
    return np.outer(wy, wx).astype(np.float32)


class FeatherBlend:
    """Sharper (Lanczos) upscale of the generated face, alpha-blended with a feathered
    lower-face mask: no visible rectangle, the eyes and forehead stay original."""

    def __init__(self, top: float = 0.42, ramp: float = 0.16, edge: float = 0.12) -> None:
        self.params = (top, ramp, edge)
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    def mask(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._masks:
            if len(self._masks) > 64:
                self._masks.clear()
            self._masks[key] = feather_mask(height, width, *self.params)[..., None]
        return self._masks[key]

    def __call__(
        self, frame: np.ndarray, generated: np.ndarray, box: tuple[int, int, int, int]
    ) -> np.ndarray:
        x1, y1, x2, y2 = box
        h, w = y2 - y1, x2 - x1
        up = cv2.resize(
            generated, (w, h), interpolation=cv2.INTER_LANCZOS4 if h > generated.shape[0] else cv2.INTER_AREA
        )
        region = frame[y1:y2, x1:x2].astype(np.float32)
        alpha = self.mask(h, w)
        blended = region + alpha * (up.astype(np.float32) - region)
        frame[y1:y2, x1:x2] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return frame


def make_compositor(mode: str) -> Compositor:
    if mode == "fast":
        return hard_paste
    if mode == "feather":
        return FeatherBlend()
    raise ValueError(f"unknown mode {mode!r}")
