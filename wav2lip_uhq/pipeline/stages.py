"""The per-frame stages after the generator: upscale, parse, composite, restore, refine.

Each stage has one interface, ``process(items, progress)``: it works on a batch of
:class:`FrameWork` (the frames with a generated face, in output order) and fills in its part
of each. No stage writes into an array it was given: the generated face, the parsing mask and
the composite are new arrays, and a stage that changes pixels returns a :class:`Patch` that
the frame's own record applies to the result frame it owns. A decoded frame that is shared
(the loop cache's, marked read-only) is copied at the first change; one handed over by the
decoder (writable, referenced nowhere else) becomes the record's result without a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..compositing import Compositor, Placement
from ..faces.stream import FaceGeometry
from ..patches import Patch

Progress = Callable[..., None]  # (fraction of the batch done, detail=None), e.g. (0.5, "crop 4/8")


@dataclass(eq=False)
class FrameWork:
    """One output frame on its way from the tracker to the encoder."""

    index: int  # output frame
    source: np.ndarray | None  # the decoded frame (None once the result took its place, see ``apply``)
    source_index: int  # which input frame (differs from ``index`` when the video loops)
    geometry: FaceGeometry
    placement: Placement | None = None  # the generator's crop; None: the frame passes through
    generated: np.ndarray | None = None  # the generator's face, uint8 BGR (upscaled after Upscale)
    visible: np.ndarray | None = None  # face-parsing mask over the compositing region
    roi: tuple[int, int, int, int] | None = None  # the compositing region
    alpha: np.ndarray | None = None  # the compositing alpha over ``roi`` (None: hard paste)
    keep_source: bool = True  # the original is read later (extra outputs): never write into it
    taps: dict[str, Any] = field(default_factory=dict)  # what extra outputs keep on the way (extras.Tap)
    _result: np.ndarray | None = None

    @property
    def frame(self) -> np.ndarray:
        """The frame as the stages so far left it (the source until one changes a pixel)."""
        return self.source if self._result is None else self._result

    def apply(self, patch: Patch | None) -> None:
        """Write a stage's patch into the result frame this record owns: at the first change, a
        copy of a shared (read-only) source, or the handed-over source itself."""
        if patch is None:
            return
        if self._result is None:
            owned = self.source.flags.writeable and not self.keep_source
            self._result = self.source if owned else self.source.copy()
            if not self.keep_source:  # nothing reads the original any more
                self.source = None
        patch.apply(self._result)


class Stage(Protocol):
    name: str  # the progress label while it runs

    def process(self, items: Sequence[FrameWork], progress: Progress) -> None:
        """Fill in this stage's part of ``items`` (never writing into arrays they hold)."""
        ...


class Upscale:
    """Super-resolution of the generator's faces before they are pasted (``--upscaler``)."""

    name = "upscaling"

    def __init__(self, upscaler: Any) -> None:
        self.upscaler = upscaler

    def process(self, items: Sequence[FrameWork], progress: Progress) -> None:
        for item, face in zip(items, self.upscaler.upscale([it.generated for it in items])):
            item.generated = face


class Parse:
    """One batched face-parsing call over the batch's compositing regions (``--parser``): the
    mouth is never painted over hair, hands or occluders."""

    name = "parsing"

    def __init__(self, parser: Any, compositor: Any, keep_neck: bool = False) -> None:
        from ..parsing import KEEP

        self.parser, self.compositor = parser, compositor
        self.keep = KEEP + ((14,) if keep_neck else ())

    def process(self, items: Sequence[FrameWork], progress: Progress) -> None:
        from .. import parsing

        rois = []
        for it in items:
            size = it.generated.shape[0]
            rois.append(self.compositor.roi(it.frame.shape, size, it.placement.scaled(size // it.placement.size))[0])
        masks = parsing.parsing_masks_for_rois([it.frame for it in items], rois, self.parser, keep=self.keep)
        for item, mask in zip(items, masks):
            item.visible = mask


class Composite:
    """The generated face into the frame (hard paste, feathered box or landmark mask)."""

    name = "compositing"

    def __init__(self, compositor: Compositor) -> None:
        self.compositor = compositor

    def process(self, items: Sequence[FrameWork], progress: Progress) -> None:
        for item in items:
            done = self.compositor.blend(item.frame, item.generated, item.placement, item.visible)
            item.roi, item.alpha = done.roi, done.alpha
            item.apply(done.patch)


class Restore:
    """Face restoration (GFPGAN, CodeFormer, RestoreFormer), one batched call, blended back
    inside the compositing alpha only (``enhanced``)."""

    name = "restoring"

    def __init__(self, restorer: Any, strength: float) -> None:
        self.restorer, self.strength = restorer, strength

    def process(self, items: Sequence[FrameWork], progress: Progress) -> None:
        from ..restoration import restore_patches

        done = [it for it in items if it.alpha is not None]
        patches = restore_patches(
            [it.frame for it in done], [it.roi for it in done], [it.alpha for it in done], self.restorer, self.strength
        )
        for item, patch in zip(done, patches):
            item.apply(patch)


class Refine:
    """SD img2img + ControlNet on the mouth crops of the batch, one diffusion call (``uhq``);
    the session carries the track state from batch to batch."""

    name = "refining"

    def __init__(self, session: Any, cancelled: Callable[[], bool]) -> None:
        self.session, self.cancelled = session, cancelled

    def process(self, items: Sequence[FrameWork], progress: Progress) -> None:
        from ..refine import FrameJob

        done = [it for it in items if it.alpha is not None]
        jobs = [FrameJob(it.frame, it.alpha, it.roi, it.placement.landmarks, it.index) for it in done]
        progress(0.0, "first crops")  # shown while the first crops diffuse
        patches = self.session.refine_patches(
            jobs, [it.placement.box for it in done],
            lambda d, t: progress(d / max(t, 1), f"crop {d}/{t}"), self.cancelled,
        )
        for item, patch in zip(done, patches):
            item.apply(patch)
