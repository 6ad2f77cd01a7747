"""Putting the generated face back into the frame.

A compositor takes the frame, the generator's output (uint8 BGR, square, at the model's
resolution or upscaled) and a ``Placement`` (where the crop came from). ``blend`` leaves
the frame alone and returns a ``Blended``: the patch of new pixels, the region it covers and
the alpha it used over that region, so that later steps (face restoration, refinement) stay
inside the same region. Calling a compositor does the same in place (the original API).

- ``hard_paste``: upstream Wav2Lip, the whole box replaced (``--mode fast``).
- ``FeatherBlend``: a feathered lower-face rectangle, no landmarks needed (``feather``).
- ``MaskBlend``: landmark mask, colour match, optional sharpen/regrain, alpha, Laplacian or
  Poisson blending, rotation-aware (``improved`` and ``enhanced``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from .masks import MaskOptions, box_fade, landmark_mask
from .patches import Patch

BLENDS = ("alpha", "laplacian", "poisson")


@dataclass
class Placement:
    """Where a generated crop belongs: ``matrix`` maps frame pixels to crop pixels (2x3) for a
    crop of ``size`` pixels; ``box`` is the axis-aligned generator box (x1, y1, x2, y2)."""

    box: tuple[int, int, int, int]
    matrix: np.ndarray
    size: int
    landmarks: np.ndarray | None = None
    index: int = 0  # output frame index: seeds the grain so a rerun is identical

    @classmethod
    def from_box(cls, box, size: int, landmarks=None, index: int = 0, angle: float = 0.0) -> Placement:
        """The crop of ``box`` resized to ``size`` (cv2.resize's pixel-centre convention),
        rotated by ``angle`` radians about the box centre when aligning tilted heads."""
        x1, y1, x2, y2 = (int(v) for v in box)
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2 - 1) / 2.0, (y1 + y2 - 1) / 2.0
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, s], [-s, c]])  # R(-angle): frame -> upright
        lin = np.diag([size / w, size / h]) @ rot
        t = np.array([(size - 1) / 2.0, (size - 1) / 2.0]) - lin @ np.array([cx, cy])
        return cls((x1, y1, x2, y2), np.hstack([lin, t[:, None]]).astype(np.float64), size, landmarks, index)

    def scaled(self, factor: int) -> Placement:
        """The same placement for a crop upscaled ``factor`` times (super-resolution)."""
        m = self.matrix.copy()
        m[:, :2] *= factor
        m[:, 2] = (m[:, 2] + 0.5) * factor - 0.5
        return Placement(self.box, m, self.size * factor, self.landmarks, self.index)

    @property
    def axis_aligned(self) -> bool:
        return abs(self.matrix[0, 1]) < 1e-9 and abs(self.matrix[1, 0]) < 1e-9


def extract_crop(frame: np.ndarray, placement: Placement) -> np.ndarray:
    """The generator's input crop: upstream's resize when axis-aligned, an affine warp otherwise."""
    x1, y1, x2, y2 = placement.box
    if placement.axis_aligned:
        return cv2.resize(frame[y1:y2, x1:x2], (placement.size, placement.size))
    return cv2.warpAffine(
        frame,
        placement.matrix,
        (placement.size, placement.size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def eye_angle(landmarks: np.ndarray) -> float:
    """Head roll in radians (0 when the eyes are level; positive when the right eye is lower)."""
    left, right = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    return float(np.arctan2(right[1] - left[1], right[0] - left[0]))


@dataclass(frozen=True)
class Blended:
    """What a compositor changes: ``patch`` (None: nothing), over ``roi`` with ``alpha``."""

    roi: tuple[int, int, int, int]
    alpha: np.ndarray | None  # over ``roi``; None for a hard paste (the whole box)
    patch: Patch | None


class Compositor(Protocol):
    def blend(
        self, frame: np.ndarray, generated: np.ndarray, placement: Placement, visible: np.ndarray | None = None
    ) -> Blended:
        """The new pixels for ``frame`` (which is not written to)."""
        ...


def paste_into(
    frame: np.ndarray, compositor: Compositor, generated: np.ndarray, placement: Placement,
    visible: np.ndarray | None = None,
) -> Blended:
    """Blend ``generated`` into ``frame`` in place (a frame the caller owns: tests, benchmarks);
    the pipeline's stages use ``blend`` and apply its patch to their own copy."""
    done = compositor.blend(frame, generated, placement, visible)
    if done.patch is not None:
        done.patch.apply(frame)
    return done


class HardPaste:
    """Upstream Wav2Lip: bilinear resize into the box and replace the whole rectangle."""

    def blend(self, frame, generated, placement, visible=None) -> Blended:
        x1, y1, x2, y2 = placement.box
        return Blended(placement.box, None, Patch(placement.box, cv2.resize(generated, (x2 - x1, y2 - y1))))


hard_paste = HardPaste()


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


def _alpha_blend(region: np.ndarray, new: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """region + alpha * (new - region): exactly ``region`` where alpha is 0."""
    out = region.astype(np.float32) + alpha[..., None] * (new.astype(np.float32) - region)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class FeatherBlend:
    """Sharper (Lanczos) upscale of the generated face, alpha-blended with a feathered
    lower-face mask: no visible rectangle, the eyes and forehead stay original."""

    def __init__(self) -> None:
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    def mask(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._masks:
            if len(self._masks) > 64:
                self._masks.clear()
            self._masks[key] = feather_mask(height, width)
        return self._masks[key]

    def blend(self, frame, generated, placement, visible=None) -> Blended:
        x1, y1, x2, y2 = placement.box
        h, w = y2 - y1, x2 - x1
        interp = cv2.INTER_LANCZOS4 if h > generated.shape[0] else cv2.INTER_AREA
        up = cv2.resize(generated, (w, h), interpolation=interp)
        alpha = self.mask(h, w)
        return Blended(placement.box, alpha, Patch(placement.box, _alpha_blend(frame[y1:y2, x1:x2], up, alpha)))


# -- colour and detail -------------------------------------------------------------------
def match_colour(new: np.ndarray, reference: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Shift (and gently rescale) ``new``'s Lab statistics to ``reference``'s, weighted by
    ``weight``: the generator drifts in colour; this keeps the original's skin tone."""
    step = max(1, int(np.sqrt(weight.size / 20000)))  # statistics from <= ~20k samples: plenty
    w = weight[::step, ::step].astype(np.float64)[..., None]
    total = w.sum()
    if total < 16:
        return new
    a = cv2.cvtColor(new, cv2.COLOR_BGR2LAB).astype(np.float32)
    b = cv2.cvtColor(reference[::step, ::step], cv2.COLOR_BGR2LAB).astype(np.float64)
    a_s = a[::step, ::step].astype(np.float64)
    mu_a, mu_b = (a_s * w).sum((0, 1)) / total, (b * w).sum((0, 1)) / total
    sd_a = np.sqrt(((a_s - mu_a) ** 2 * w).sum((0, 1)) / total) + 1e-3
    sd_b = np.sqrt(((b - mu_b) ** 2 * w).sum((0, 1)) / total) + 1e-3
    ratio = np.clip(sd_b / sd_a, 0.8, 1.25)
    out = (a - mu_a.astype(np.float32)) * ratio.astype(np.float32) + mu_b.astype(np.float32)
    return cv2.cvtColor(np.clip(np.rint(out), 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def sharpen(image: np.ndarray, amount: float, sigma: float = 1.0) -> np.ndarray:
    """Unsharp mask: the upscaled generator output is softer than real skin."""
    if amount <= 0:
        return image
    blur = cv2.GaussianBlur(image, (0, 0), sigma)
    return cv2.addWeighted(image, 1 + amount, blur, -amount, 0)


def _grain_sigma(image: np.ndarray, weight: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    high = gray - cv2.GaussianBlur(gray, (0, 0), 1.0)
    w = weight > 0.5
    return float(high[w].std()) if w.sum() > 16 else 0.0


def regrain(new: np.ndarray, reference: np.ndarray, weight: np.ndarray, seed: int) -> np.ndarray:
    """Add luma grain so the new mouth has the original's high-frequency noise level."""
    missing = _grain_sigma(reference, weight) ** 2 - _grain_sigma(new, weight) ** 2
    if missing <= 0.25:
        return new
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, np.sqrt(missing), size=new.shape[:2]).astype(np.float32)
    return np.clip(new.astype(np.float32) + noise[..., None], 0, 255).astype(np.uint8)


def laplacian_blend(region: np.ndarray, new: np.ndarray, alpha: np.ndarray, levels: int = 4) -> np.ndarray:
    """Multi-band blend: low frequencies mix over a wide band, details over a narrow one."""
    levels = max(1, min(levels, int(np.log2(max(2, min(region.shape[:2])))) - 2))
    ga = [alpha.astype(np.float32)]
    la, lb = [], []
    a, b = region.astype(np.float32), new.astype(np.float32)
    for _ in range(levels):
        ga.append(cv2.pyrDown(ga[-1]))
        da, db = cv2.pyrDown(a), cv2.pyrDown(b)
        size = (a.shape[1], a.shape[0])
        la.append(a - cv2.pyrUp(da, dstsize=size))
        lb.append(b - cv2.pyrUp(db, dstsize=size))
        a, b = da, db
    out = a * (1 - ga[-1][..., None]) + b * ga[-1][..., None]
    for lvl in range(levels - 1, -1, -1):
        size = (la[lvl].shape[1], la[lvl].shape[0])
        m = ga[lvl][..., None]
        out = cv2.pyrUp(out, dstsize=size) + la[lvl] * (1 - m) + lb[lvl] * m
    return np.clip(out, 0, 255)


@dataclass(frozen=True)
class BlendOptions:
    mask: MaskOptions = MaskOptions()
    colour_match: bool = True
    sharpen: float = 0.0  # unsharp amount, 0 = off
    regrain: bool = False
    blend: str = "alpha"  # "alpha", "laplacian" or "poisson"


class MaskBlend:
    """Landmark-masked compositing. Pixels where the mask is 0 are never changed."""

    def __init__(self, options: BlendOptions = BlendOptions()) -> None:
        if options.blend not in BLENDS:
            raise ValueError(f"unknown blend {options.blend!r} (choose from {', '.join(BLENDS)})")
        self.options = options
        self._fades: dict[int, np.ndarray] = {}

    def _fade(self, size: int) -> np.ndarray:
        if size not in self._fades:
            self._fades[size] = box_fade((size, size))
        return self._fades[size]

    @staticmethod
    def roi(
        frame_shape, generated_size: int, placement: Placement
    ) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """(roi, crop->roi matrix): the frame rectangle the generated crop covers."""
        inv = cv2.invertAffineTransform(placement.matrix)
        s = generated_size
        corners = np.array([[0, 0, 1], [s - 1, 0, 1], [0, s - 1, 1], [s - 1, s - 1, 1]], np.float64) @ inv.T
        h, w = frame_shape[:2]
        x1, y1 = np.floor(corners.min(0)).astype(int)
        x2, y2 = np.ceil(corners.max(0)).astype(int) + 1
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        to_roi = inv.copy()
        to_roi[:, 2] -= (x1, y1)
        return (x1, y1, x2, y2), to_roi

    def alpha(
        self, frame_shape, generated_size: int, placement: Placement
    ) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
        """(roi, crop->roi matrix, alpha over the roi) for a placement."""
        (x1, y1, x2, y2), to_roi = self.roi(frame_shape, generated_size, placement)
        s = generated_size
        fade = cv2.warpAffine(
            self._fade(s), to_roi, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderValue=0
        )
        if placement.landmarks is not None:
            mask = landmark_mask(placement.landmarks, (y2 - y1, x2 - x1), self.options.mask, offset=(x1, y1))
        else:  # no landmarks (e.g. a fixed box): the feathered lower-face rectangle, warped
            mask = cv2.warpAffine(
                feather_mask(s, s), to_roi, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderValue=0
            )
        return (x1, y1, x2, y2), to_roi, mask * fade

    def blend(
        self,
        frame: np.ndarray,
        generated: np.ndarray,
        placement: Placement,
        visible: np.ndarray | None = None,
    ) -> Blended:
        """``visible``: optional (roi-sized) face-parsing mask, 0 on hair, hands and occluders."""
        if generated.shape[0] != placement.size:
            placement = placement.scaled(generated.shape[0] // placement.size)
        roi, to_roi, alpha = self.alpha(frame.shape, generated.shape[0], placement)
        if visible is not None and visible.shape == alpha.shape:
            alpha = alpha * visible
        x1, y1, x2, y2 = roi
        if x2 <= x1 or y2 <= y1 or not alpha.any():
            return Blended(roi, alpha, None)
        region = frame[y1:y2, x1:x2]
        up = cv2.warpAffine(
            generated, to_roi, (x2 - x1, y2 - y1), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
        )
        up, alpha = self._styled(region, up, alpha, placement.index)
        return Blended(roi, alpha, Patch(roi, _alpha_blend(region, up, alpha)))

    def _styled(
        self, region: np.ndarray, up: np.ndarray, alpha: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Colour match, sharpen, regrain and the chosen blend: (new pixels, final alpha)."""
        o = self.options
        if o.colour_match:
            up = match_colour(up, region, alpha)
        up = sharpen(up, o.sharpen)
        if o.regrain:
            up = regrain(up, region, alpha, seed=seed)
        if o.blend == "laplacian":
            up = laplacian_blend(region, up, alpha)
            alpha = np.clip(alpha * 4.0, 0.0, 1.0)  # the pyramid already blended; stay inside the mask
        elif o.blend == "poisson":
            inside = (alpha > 0.5).astype(np.uint8) * 255
            ys, xs = np.nonzero(inside)
            if (
                len(xs) > 16
                and xs.min() > 0
                and ys.min() > 0
                and xs.max() < inside.shape[1] - 1
                and ys.max() < inside.shape[0] - 1
            ):
                centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
                up = cv2.seamlessClone(up, np.ascontiguousarray(region), inside, centre, cv2.NORMAL_CLONE)
        return up, alpha


def make_compositor(mode: str, options: BlendOptions = BlendOptions()) -> Compositor:
    if mode == "fast":
        return hard_paste
    if mode == "feather":
        return FeatherBlend()
    if mode in ("improved", "enhanced"):
        return MaskBlend(options)
    raise ValueError(f"unknown mode {mode!r}")
