"""The run's extra outputs (``--extra-outputs``), written by the encode stage from the one pass.

No second decode and no second generator call: what an output needs is kept on each frame's
record as it goes by, small where it can be (``Tap`` stages in the stage list: the generator's
face before any upscaling for ``raw``, the composited region for ``composited``), and the frames
are made and written beside the result's as each record reaches the encoder (memory stays that
of the batches in flight). The files appear together with the result, or none of them: each is
written under a temporary name, finished, then all are moved into place (``ExtraWriters``).

- ``raw``: the source frame with the generator's face hard-pasted into its box, as ``fast``
  mode pastes it (no blend, colour match, restoration or refinement);
- ``composited``: the frame after compositing, before face restoration and SD refinement;
- ``debug``: result | overlay side by side (``draw_debug``);
- ``mask`` / ``mask_png``: a layer for an editor: straight (unpremultiplied) colour and
  alpha = the compositing mask, whose colour is chosen so that the layer over the original video
  (a normal blend) gives the result: ``original + alpha * (layer - original) = result``.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..compositing import Placement
from ..errors import OutputError
from ..video import ALPHA_FORMAT, AudioTrack, EncodeSettings, VideoWriter
from .stages import Composite, FrameWork, Progress, Stage

log = logging.getLogger(__name__)


def draw_debug(
    frame: np.ndarray, placement: Placement | None, alpha: np.ndarray | None, roi: tuple[int, int, int, int] | None
) -> np.ndarray:
    """The frame with the mask tinted red, landmarks in green and the generator box in blue."""
    vis = frame.copy()
    if placement is None:
        return vis
    if alpha is not None and roi is not None:
        x1, y1, x2, y2 = roi
        region = vis[y1:y2, x1:x2].astype(np.float32)
        region[..., 2] = region[..., 2] * (1 - 0.6 * alpha) + 255 * 0.6 * alpha
        vis[y1:y2, x1:x2] = region.astype(np.uint8)
    x1, y1, x2, y2 = placement.box
    cv2.rectangle(vis, (x1, y1), (x2 - 1, y2 - 1), (255, 0, 0), 1)
    if placement.landmarks is not None:
        for x, y in placement.landmarks:
            cv2.circle(vis, (round(float(x)), round(float(y))), 1, (0, 255, 0), -1)
    return vis


# -- keeping what the outputs need, as the frames go through the stages -----------------------------
class Tap:
    """A stage that changes nothing: it keeps one extra output's part of each record."""

    name = "extra outputs"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def process(self, items: Sequence[FrameWork], progress: Progress) -> None:
        for item in items:
            if self.kind == "raw":  # the generator's face itself (stages replace it, never write into it)
                item.taps["raw"] = item.generated
            elif item.roi is not None:  # compositing wrote inside its region only: keep that region
                x1, y1, x2, y2 = item.roi
                item.taps[self.kind] = (item.roi, item.frame[y1:y2, x1:x2].copy())


def with_taps(stages: Sequence[Stage], kinds: Sequence[str]) -> list[Stage]:
    """``stages`` with the taps ``kinds`` need: ``raw`` first (before any upscaling), ``composited``
    right after compositing (before restoration and refinement)."""
    out = list(stages)
    if "composited" in kinds:
        at = next(i for i, s in enumerate(out) if isinstance(s, Composite))
        out.insert(at + 1, Tap("composited"))
    if "raw" in kinds:
        out.insert(0, Tap("raw"))
    return out


# -- making the frames ---------------------------------------------------------------------------
def raw_frame(item: FrameWork) -> np.ndarray:
    """The source with the generator's face hard-pasted into its box (fast mode's paste)."""
    source = item.source
    face = item.taps.get("raw")
    if face is None or item.placement is None:
        return source
    p = item.placement
    if face.shape[0] != p.size:
        p = p.scaled(face.shape[0] // p.size)
    out = source.copy()
    x1, y1, x2, y2 = p.box
    if p.axis_aligned:
        out[y1:y2, x1:x2] = cv2.resize(face, (x2 - x1, y2 - y1))
    else:  # aligned (rotated) crop: warped back, a hard edge all the same
        h, w = out.shape[:2]
        cv2.warpAffine(face, cv2.invertAffineTransform(p.matrix), (w, h), dst=out, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_TRANSPARENT)
    return out


def composited_frame(item: FrameWork) -> np.ndarray:
    """The source with the composited region kept by the tap (later stages changed the result only)."""
    kept = item.taps.get("composited")
    if kept is None:
        return item.source
    (x1, y1, x2, y2), region = kept
    out = item.source.copy()
    out[y1:y2, x1:x2] = region
    return out


def mask_of(item: FrameWork) -> np.ndarray:
    """The compositing mask over the whole frame, float32 in [0, 1] (a hard paste: 1 in its box)."""
    h, w = item.source.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    if item.roi is not None:
        x1, y1, x2, y2 = item.roi
        alpha[y1:y2, x1:x2] = 1.0 if item.alpha is None else item.alpha
    return alpha


def mouth_layer(item: FrameWork) -> np.ndarray:
    """BGRA float32 (colour 0-255, alpha 0-1): colour such that the layer over the source gives
    the result; where the mask is 0 the colour is the result's."""
    alpha = mask_of(item)
    result = item.frame
    layer = np.empty(result.shape[:2] + (4,), np.float32)
    layer[..., :3] = result
    layer[..., 3] = alpha
    if item.roi is not None:
        x1, y1, x2, y2 = item.roi
        a = alpha[y1:y2, x1:x2, None]
        s = item.source[y1:y2, x1:x2].astype(np.float32)
        r = result[y1:y2, x1:x2].astype(np.float32)
        inside = a > 1e-3
        colour = s + (r - s) / np.where(inside, a, 1.0)
        layer[y1:y2, x1:x2, :3] = np.where(inside, np.clip(colour, 0, 255), r)
    return layer


def ten_bit(layer: np.ndarray) -> np.ndarray:
    """The float layer as uint16 (colour 0-255, alpha 0-1023) for the ProRes writer's queue: half
    the memory of float32, and the alpha already at the 10 bits it is written with."""
    out = np.empty(layer.shape, np.uint16)
    out[..., :3] = np.rint(layer[..., :3])
    out[..., 3] = np.rint(layer[..., 3] * 1023.0)
    return out


# -- writing ----------------------------------------------------------------------------------------
class PngSequence:
    """RGBA PNGs (``000000.png`` ...) into a temporary folder beside ``path``, moved into place
    by ``commit`` (an existing folder is replaced only then)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            self.tmp.mkdir()
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create the output ({exc.strerror or exc})") from None
        self.frames = 0

    def write(self, layer: np.ndarray) -> None:
        """``layer``: BGRA float32 (colour 0-255, alpha 0-1), written as 8-bit RGBA."""
        bgra = np.empty(layer.shape, np.uint8)
        bgra[..., :3] = np.rint(layer[..., :3])
        bgra[..., 3] = np.rint(layer[..., 3] * 255.0)
        name = self.tmp / f"{self.frames:06d}.png"
        if not cv2.imwrite(str(name), bgra):
            raise OutputError(f"{self.path}: cannot write {name.name}")
        self.frames += 1

    def finish(self) -> None:
        pass

    def commit(self) -> Path:
        old = None
        if self.path.exists():  # --overwrite: the old folder goes only once the new one is complete
            old = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class ExtraWriters:
    """One writer per extra output; ``write`` makes each one's frame from the record."""

    def __init__(self, paths: dict[str, Path], width: int, height: int, rate, track: AudioTrack | None,
                 settings: EncodeSettings) -> None:
        self.writers: dict[str, object] = {}
        try:
            for kind, path in paths.items():
                if kind == "mask":
                    self.writers[kind] = VideoWriter(path, width, height, rate, None, settings, fmt=ALPHA_FORMAT)
                elif kind == "mask_png":
                    self.writers[kind] = PngSequence(path)
                else:
                    w = width * 2 if kind == "debug" else width
                    self.writers[kind] = VideoWriter(path, w, height, rate, track, settings)
        except BaseException:
            self.abort()
            raise

    def write(self, item: FrameWork) -> None:
        layer = None
        for kind, writer in self.writers.items():
            if kind == "raw":
                writer.write(raw_frame(item))
            elif kind == "composited":
                writer.write(composited_frame(item))
            elif kind == "debug":
                overlay = draw_debug(item.source, item.placement, item.alpha, item.roi)
                writer.write(np.concatenate([item.frame, overlay], axis=1))
            else:
                layer = mouth_layer(item) if layer is None else layer
                writer.write(layer if kind == "mask_png" else ten_bit(layer))

    def finish(self) -> None:
        for writer in self.writers.values():
            writer.finish()

    def commit(self) -> list[Path]:
        """Move every finished file into place; if one cannot be, the rest are dropped."""
        done = []
        for writer in self.writers.values():
            try:
                done.append(writer.commit())
            except BaseException:
                self.abort()
                raise
        return done

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()
