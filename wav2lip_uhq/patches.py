"""A patch: new pixels for one rectangle of a frame.

Stages that change a frame (compositing, restoration, refinement) return patches instead of
writing into the frame they were given, so a decoded frame can be shared (the loop cache, the
debug overlay, the generator's worker thread) without defensive copies; the frame's owner
applies them to its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Patch:
    roi: tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels
    pixels: np.ndarray  # (y2 - y1, x2 - x1, C), the frame's dtype

    def apply(self, frame: np.ndarray) -> None:
        """Write the patch into ``frame`` (which the caller owns)."""
        x1, y1, x2, y2 = self.roi
        frame[y1:y2, x1:x2] = self.pixels

    def region(self, frame: np.ndarray) -> np.ndarray:
        """The pixels of ``frame`` under the patch (a view)."""
        x1, y1, x2, y2 = self.roi
        return frame[y1:y2, x1:x2]
