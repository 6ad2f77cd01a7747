"""Soft masks of the region Wav2Lip changes, built from (smoothed) 68-point landmarks.

Masks are computed from landmarks that are already temporally smoothed, so they are stable
over time by construction (no per-frame thresholding). The edge is a distance-based
falloff centred on the region's outline: alpha rises smoothly from 0 at ``feather / 2`` pixels
outside it to 1 at ``feather / 2`` pixels inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MASK_REGIONS = ("lower_face", "mouth")

# 68-point indices (iBUG layout)
JAW = list(range(0, 17))
NOSE_BASE = [31, 32, 33, 34, 35]
MOUTH = list(range(48, 60))


@dataclass(frozen=True)
class MaskOptions:
    region: str = "lower_face"  # "lower_face" (lips, chin, lower cheeks) or "mouth" (lips and around)
    dilate: float = 0.0  # grow (+) or shrink (-) the region, as a fraction of the face width
    feather: float = 0.12  # soft edge width, as a fraction of the face width
    mouth_margin: float = 0.35  # "mouth" region: margin around the lips, fraction of mouth width


def face_width(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[16] - points[0]))


def region_polygon(points: np.ndarray, options: MaskOptions) -> np.ndarray:
    """The region's outline (K, 2) in the landmarks' coordinates."""
    if options.region == "lower_face":
        # jaw from the lower left cheek around the chin to the lower right cheek, closed under the nose
        jaw = points[2:15]
        nose = points[NOSE_BASE][::-1]
        nose = (
            nose - 0.3 * (points[33] - points[30])[None]
        )  # a little above the nostrils: all of the upper lip
        return np.concatenate([jaw, nose]).astype(np.float32)
    if options.region == "mouth":
        lips = points[MOUTH]
        centre = lips.mean(0)
        width = np.linalg.norm(points[54] - points[48])
        hull = cv2.convexHull(lips.astype(np.float32)).reshape(-1, 2)
        direction = hull - centre
        norm = np.linalg.norm(direction, axis=1, keepdims=True) + 1e-6
        grown = hull + direction / norm * options.mouth_margin * width
        # extend toward the chin: the jaw moves with the mouth
        grown[:, 1] = np.where(
            grown[:, 1] > centre[1], grown[:, 1] + 0.25 * (points[8, 1] - centre[1]), grown[:, 1]
        )
        return grown.astype(np.float32)
    raise ValueError(f"unknown mask region {options.region!r} (choose from {', '.join(MASK_REGIONS)})")


def landmark_mask(
    points: np.ndarray,
    shape: tuple[int, int],
    options: MaskOptions = MaskOptions(),
    offset: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
) -> np.ndarray:
    """float32 (H, W) alpha in [0, 1] for an image of ``shape``, whose origin is at ``offset``
    (x, y) of the landmarks' frame, sampled at ``scale`` pixels per landmark unit."""
    h, w = shape
    pts = (points - np.asarray(offset, np.float32)) * scale
    fw = face_width(pts)
    poly = region_polygon(pts, options)
    # Rasterise at 4x sub-pixel precision (shift=2) for smooth motion of the edge.
    hard = np.zeros((h, w), np.uint8)
    cv2.fillPoly(hard, [np.round(poly * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
    hard = (hard > 127).astype(np.uint8)
    grow = int(round(options.dilate * fw))
    if grow:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(grow) + 1, 2 * abs(grow) + 1))
        hard = cv2.dilate(hard, k) if grow > 0 else cv2.erode(hard, k)
    feather = max(1.0, options.feather * fw)
    # Signed distance to the outline: the soft edge is centred on it (half inside, half outside).
    inside = cv2.distanceTransform(hard, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - hard, cv2.DIST_L2, 5)
    signed = np.where(hard > 0, inside - 0.5, 0.5 - outside)  # pixel centres: +-0.5 at the outline
    t = np.clip(signed / feather + 0.5, 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def box_fade(shape: tuple[int, int], margin: float = 0.06) -> np.ndarray:
    """(H, W) weights that fade to 0 at the borders of the generated box, so no mask can
    reach past what the generator produced."""
    h, w = shape

    def ramp(n):
        d = np.minimum(np.arange(n) + 0.5, n - np.arange(n) - 0.5) / max(1.0, margin * n)
        d = np.clip(d, 0, 1)
        return d * d * (3 - 2 * d)

    return np.outer(ramp(h), ramp(w)).astype(np.float32)
