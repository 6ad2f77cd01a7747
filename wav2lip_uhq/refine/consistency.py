"""Temporal consistency of the refinement along a face track, and the lip-sync guard.

- Noise: every crop of every frame gets a generator seeded with the same seed, so the initial
  noise is one fixed tensor in crop (latent) coordinates: it moves with the face, and batching
  cannot change which noise a frame gets.
- Blending: what refinement adds is the residual ``refined - wav2lip`` in crop coordinates. It is
  blended with the previous frame's residual (an exponential filter along the track) and, with
  ``every`` > 1, interpolated between refined key frames. The Wav2Lip mouth itself is never
  delayed: only the added detail is smoothed, so blending cannot make the lips lag.
- Sync guard: the mouth opening of the result is compared with the Wav2Lip mouth's; beyond the
  bound the frame keeps the unrefined (Wav2Lip) mouth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .base import CropBox

INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # 68-point layout: upper / lower inner lip


def generators(seed: int, n: int):
    """One CPU generator per crop, all with the same seed (device-independent noise)."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(seed)) for _ in range(n)]


# -- mouth opening -----------------------------------------------------------------------------
def landmark_opening(points: np.ndarray) -> float:
    """Inner-lip gap over the mouth width (68-point landmarks): 0 closed, ~0.3-0.5 wide open."""
    width = float(np.linalg.norm(points[54] - points[48])) + 1e-6
    gap = np.mean([np.linalg.norm(points[a] - points[b]) for a, b in INNER_LIP_PAIRS])
    return float(gap / width)


class LandmarkOpening:
    """The opening measured by the landmark detector on the Wav2Lip frame and on the refined one."""

    def __init__(self, detector) -> None:
        self.detector = detector

    def __call__(self, frames_bgr: Sequence[np.ndarray], face_boxes: Sequence) -> np.ndarray:
        boxes = np.asarray(face_boxes, np.float32).reshape(len(frames_bgr), 4)
        pts = self.detector.landmarks(list(frames_bgr), boxes)
        return np.array([np.nan if np.isnan(p).any() else landmark_opening(p) for p in pts])


def cavity_opening(crop_rgb: np.ndarray, lips: np.ndarray, threshold: float | None = None) -> tuple[float, float]:
    """(opening, threshold): the height of the dark mouth cavity over the mouth width, measured in
    the central half of the mouth; ``lips`` are points 48-59 in crop coordinates. Pass the
    threshold found on the Wav2Lip crop when measuring the refined one, so both use one scale.

    Cheaper than a landmark pass (no model) and it reads the pixels the diffusion produced: the
    cavity between the lips is the darkest part of the mouth region whenever the mouth is open."""
    gray = crop_rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    left, right = lips[0], lips[6]  # 48, 54: mouth corners
    width = float(np.linalg.norm(right - left)) + 1e-6
    h, w = gray.shape
    x1, x2 = int(round(left[0] + 0.25 * width)), int(round(right[0] - 0.25 * width)) + 1
    y1, y2 = int(round(lips[:, 1].min() - 0.1 * width)), int(round(lips[:, 1].max() + 0.1 * width)) + 1
    x1, x2, y1, y2 = max(0, x1), min(w, x2), max(0, y1), min(h, y2)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return float("nan"), threshold if threshold is not None else 0.0
    region = gray[y1:y2, x1:x2]
    if threshold is None:
        threshold = 0.55 * float(np.median(region))
    dark = (region < threshold).sum(0)
    return float(np.median(dark) / width), threshold


@dataclass
class SyncGuard:
    """Keeps the refined mouth opening within ``tolerance`` (fraction of the mouth width)."""

    tolerance: float | None
    method: str = "cavity"  # or "landmarks"
    meter: LandmarkOpening | None = None
    rejected: int = 0
    checked: int = 0

    def ok_cavity(self, before: np.ndarray, after: np.ndarray, lips: np.ndarray | None) -> bool:
        if self.tolerance is None or lips is None:
            return True
        a, t = cavity_opening(before, lips)
        b, _ = cavity_opening(after, lips, t)
        return self._judge(a, b)

    def ok_landmarks(self, before_frames, after_frames, boxes) -> list[bool]:
        if self.tolerance is None or self.meter is None:
            return [True] * len(before_frames)
        a = self.meter(before_frames, boxes)
        b = self.meter(after_frames, boxes)
        return [self._judge(x, y) for x, y in zip(a, b)]

    def _judge(self, a: float, b: float) -> bool:
        if np.isnan(a) or np.isnan(b):
            return True  # not measurable (no mouth found): nothing to compare
        self.checked += 1
        if abs(b - a) > self.tolerance:
            self.rejected += 1
            return False
        return True


# -- along the track ---------------------------------------------------------------------------
class TrackBlender:
    """Residual smoothing and key-frame interpolation along a face track (crop coordinates)."""

    def __init__(self, blend: float = 0.0) -> None:
        self.blend = blend
        self.reset()

    def reset(self) -> None:
        self.index: int | None = None
        self.box: CropBox | None = None
        self.residual: np.ndarray | None = None  # the last output residual
        self.key_residual: np.ndarray | None = None  # the last key frame's raw residual

    def continues(self, index: int, box: CropBox) -> bool:
        """Same track: the next frame, a crop that moved and scaled only a little."""
        if self.index is None or self.box is None or index != self.index + 1:
            return False
        b = self.box
        move = np.hypot(box.x + box.side / 2 - b.x - b.side / 2, box.y + box.side / 2 - b.y - b.side / 2)
        return move < 0.25 * b.side and 0.8 < box.side / b.side < 1.25

    def step(self, index: int, box: CropBox, residual: np.ndarray) -> np.ndarray:
        """The residual to apply to this frame, given its own (refined or interpolated) one."""
        if not self.continues(index, box):
            self.residual = None
        if self.blend > 0 and self.residual is not None:
            residual = (1 - self.blend) * residual + self.blend * self.residual
        self.index, self.box, self.residual = index, box, residual
        return residual


def interpolate(prev: np.ndarray | None, nxt: np.ndarray | None, t: float) -> np.ndarray | None:
    """Linear interpolation between two key residuals; holds the one there is."""
    if prev is None:
        return nxt
    if nxt is None:
        return prev
    return (1 - t) * prev + t * nxt
