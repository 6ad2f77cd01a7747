"""Refinement options, the backend protocol, and the crop / mask / paste logic all backends share.

Only the mouth is diffused: a square crop around the compositing mask (with a margin), resized
to the model's working size, refined by a backend, resized back and blended into the frame
through the very mask the compositor used. Pixels where that mask is 0 are never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..options import Option, check_fields, option
from ..regions import crop_padded
from .control import PREPROCESSORS

DEFAULT_PROMPT = (
    "photo of a person speaking, natural lips, detailed mouth, realistic teeth, sharp focus, "
    "skin texture, high quality"
)
DEFAULT_NEGATIVE = (
    "blurry, deformed mouth, extra teeth, missing teeth, fused teeth, tongue out, open mouth distortion, "
    "lipstick, makeup, painting, cartoon, 3d render, lowres, jpeg artifacts, watermark, text"
)


SAMPLER_NAMES = ("dpm++_2m_karras", "dpm++_2m", "euler", "euler_a", "ddim", "unipc", "lcm", "turbo")
OPENINGS = ("auto", "landmarks", "cavity")


@dataclass(frozen=True)
class ControlSpec:
    """One ControlNet: ``model`` is a path (file or diffusers folder) for the diffusers backend,
    a model name from the host's list for the WebUI backend; ``preprocessor`` turns the Wav2Lip
    crop into its control image (see ``control.PREPROCESSORS``)."""

    model: str = field(metadata={"option": Option(
        "ControlNet model: a file or diffusers folder (in a WebUI: a name from the ControlNet list)",
        "refinement", key="controlnet", kind="str", label="ControlNet model")})
    preprocessor: str = option("canny", "turns the generated crop into the control image", group="refinement",
                               key="controlnet_preprocessor", choices=PREPROCESSORS,
                               label="ControlNet preprocessor")
    weight: float = option(1.0, "ControlNet weight", group="refinement", key="controlnet_weight", minimum=0.0,
                           maximum=2.0, step=0.05, label="ControlNet weight")
    guidance_start: float = option(0.0, "fraction of the steps where the ControlNet starts", group="refinement",
                                   key="controlnet_start", minimum=0.0, maximum=1.0, step=0.05,
                                   label="ControlNet start")
    guidance_end: float = option(1.0, "fraction of the steps where the ControlNet ends", group="refinement",
                                 key="controlnet_end", minimum=0.0, maximum=1.0, step=0.05,
                                 label="ControlNet end")

    def __post_init__(self) -> None:
        check_fields(self)


_R = "refinement"


@dataclass
class RefineOptions:
    """``--mode uhq``: SD 1.5-family img2img + ControlNet on the masked mouth."""

    checkpoint: Path | str | None = option(
        None, "SD 1.5-family checkpoint: .safetensors/.ckpt or a diffusers folder (a WebUI uses its loaded one)",
        group=_R, key="sd_checkpoint", kind="path", null=None, label="Stable Diffusion 1.5 checkpoint")
    config_dir: Path | None = option(None, "diffusers-layout configs + tokenizer for a single-file checkpoint "
                                     "(offline)", group=_R, key="sd_config", kind="path", null=None, ui=False,
                                     client=False)
    controlnets: tuple[ControlSpec, ...] = option(
        (), "ControlNets as MODEL[:PRE[:WEIGHT[:START:END]]]; repeatable (the UI shows one)", group=_R,
        kind="controlnets", cli="--controlnet", label="ControlNet",
        parts=("controlnet", "controlnet_preprocessor", "controlnet_weight", "controlnet_start",
               "controlnet_end"))
    prompt: str = option(DEFAULT_PROMPT, "refinement prompt", group=_R, kind="text")
    negative_prompt: str = option(DEFAULT_NEGATIVE, "negative prompt", group=_R, kind="text")
    denoise: float = option(0.3, "img2img strength: about steps x denoise steps run (like the WebUI)", group=_R,
                            minimum=0.01, maximum=1.0, step=0.01)
    steps: int = option(20, "sampler steps", group=_R, minimum=1, maximum=150, step=1)
    cfg: float = option(5.0, "classifier-free guidance (1-2 for LCM/turbo)", group=_R, minimum=0.0,
                        maximum=30.0, step=0.5, label="CFG scale")
    sampler: str = option("dpm++_2m_karras", "sampler (lcm for LCM / LCM-LoRA)", group=_R,
                          choices=SAMPLER_NAMES, widget="dropdown")
    seed: int = option(1234, "one seed for every frame (the same noise in crop coordinates)", group=_R,
                       minimum=0, maximum=2**32 - 1, widget="number")
    size: int = option(512, "working size of the square mouth crop (512 for SD 1.5; smaller is cheaper)",
                       group=_R, key="refine_size", minimum=32, maximum=2048, multiple_of=8, step=8,
                       label="refine size")
    margin: float = option(0.15, "crop margin around the mask, fraction of the mask's larger side", group=_R,
                           key="refine_margin", minimum=0.0, maximum=1.0, step=0.01, label="refine margin")
    every: int = option(1, "refine every N-th frame; the refinement of the others is interpolated", group=_R,
                        key="refine_every", minimum=1, maximum=64, step=1, label="refine every")
    batch_size: int = option(8, "mouth crops per diffusion call", group=_R, key="refine_batch", minimum=1,
                             maximum=64, step=1, label="refine batch")
    loras: tuple[tuple[str, float], ...] = option((), "LoRA file FILE[:WEIGHT]; repeatable", group=_R,
                                                  kind="loras", cli="--lora", ui=False, client=False)
    embeddings: tuple[str, ...] = option((), "textual-inversion file (the token is its name); repeatable",
                                         group=_R, kind="paths", cli="--embedding", ui=False, client=False)
    attention_slicing: bool = option(False, "less GPU memory, slower (diffusers)", group=_R, client=False)
    cpu_offload: bool = option(False, "model CPU offload (CUDA; small GPUs; diffusers)", group=_R,
                               client=False)
    precision: str = option("auto", "refiner precision: fp16 on CUDA, fp32 elsewhere", group=_R,
                            key="refine_precision", choices=("auto", "fp32", "fp16", "bf16"), ui=False)
    temporal_blend: float = option(0.0, "0..1: weight of the previous frame's refinement along a track",
                                   group=_R, minimum=0.0, maximum=0.95, step=0.05)
    sync_tolerance: float | None = option(0.12, "max mouth-opening change / mouth width (-1: no check)",
                                          group=_R, minimum=0.0, maximum=1.0, step=0.01, null=-1.0)
    opening: str = option("auto", "how the mouth opening is measured", group=_R, choices=OPENINGS,
                          key="refine_opening", label="mouth opening measure")
    annotators_dir: Path | None = option(None, "controlnet-aux annotator weights (lineart), local only",
                                         group=_R, kind="path", null=None, ui=False, client=False)
    mask_threshold: float = option(1.0 / 255, "diffusion mask: where the compositing alpha exceeds this",
                                   group=_R, minimum=0.0, maximum=1.0, ui=False)

    def __post_init__(self) -> None:
        check_fields(self)
        self.controlnets = tuple(c if isinstance(c, ControlSpec) else ControlSpec(**c) for c in self.controlnets)
        for c in self.controlnets:
            if not 0.0 <= c.guidance_start < c.guidance_end <= 1.0:
                raise ValueError(f"ControlNet {c.model}: need 0 <= guidance start < end <= 1")


@dataclass
class RefineBatch:
    """What a backend receives: square RGB uint8 crops at the working size, the soft masks
    (float32, 1 = repaint), one control image per ControlNet and crop, and a seed per crop."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    controls: list[list[np.ndarray]]  # [controlnet][crop]
    seeds: list[int]
    step: Callable[[int, int], None] | None = None  # (step, steps) within this call
    cancel: Callable[[], bool] | None = None


class Refiner(Protocol):
    """A refinement backend (diffusers, WebUI). Returns the refined crops, RGB uint8, same size.

    A backend may raise ``errors.Cancelled`` when ``batch.cancel()`` turns true."""

    options: RefineOptions

    def refine(self, batch: RefineBatch) -> list[np.ndarray]: ...


# -- crop geometry --------------------------------------------------------------------------
@dataclass(frozen=True)
class CropBox:
    """A square of ``side`` frame pixels at (x, y), sampled at ``size`` x ``size``."""

    x: int
    y: int
    side: int
    size: int

    @property
    def scale(self) -> float:
        return self.size / self.side

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Frame coordinates (pixel centres) -> crop coordinates (cv2.resize's convention)."""
        return (np.asarray(points, np.float64) - (self.x, self.y) + 0.5) * self.scale - 0.5


def mouth_box(alpha: np.ndarray, roi: tuple[int, int, int, int], size: int, margin: float,
              threshold: float = 1.0 / 255) -> CropBox | None:
    """The square crop around the support of ``alpha`` (given over ``roi`` of the frame), with a
    margin; None when the mask is empty. The square may extend past the frame (edges replicated)."""
    ys, xs = np.nonzero(alpha > threshold)
    if len(xs) == 0:
        return None
    x1, y1 = roi[0] + xs.min(), roi[1] + ys.min()
    x2, y2 = roi[0] + xs.max() + 1, roi[1] + ys.max() + 1
    side = int(np.ceil(max(x2 - x1, y2 - y1) * (1 + 2 * margin)))
    side = max(side, 8)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return CropBox(int(round(cx - side / 2)), int(round(cy - side / 2)), side, size)


def _window(frame_shape, box: CropBox) -> tuple[int, int, int, int]:
    """The part of the box inside the frame, in frame coordinates."""
    h, w = frame_shape[:2]
    return max(0, box.x), max(0, box.y), min(w, box.x + box.side), min(h, box.y + box.side)


def extract_square(frame: np.ndarray, box: CropBox) -> np.ndarray:
    """The box's pixels resized to the working size (edges replicated past the frame)."""
    part = crop_padded(frame, (box.x, box.y, box.x + box.side, box.y + box.side))
    interp = cv2.INTER_AREA if box.side > box.size else cv2.INTER_CUBIC
    return cv2.resize(part, (box.size, box.size), interpolation=interp)


def mask_in_box(alpha: np.ndarray, roi: tuple[int, int, int, int], box: CropBox) -> np.ndarray:
    """The compositing alpha (over ``roi``) as a float32 mask over the box at frame resolution."""
    out = np.zeros((box.side, box.side), np.float32)
    x1, y1, x2, y2 = roi
    ix1, iy1 = max(x1, box.x), max(y1, box.y)
    ix2, iy2 = min(x2, box.x + box.side), min(y2, box.y + box.side)
    if ix2 > ix1 and iy2 > iy1:
        out[iy1 - box.y : iy2 - box.y, ix1 - box.x : ix2 - box.x] = alpha[iy1 - y1 : iy2 - y1, ix1 - x1 : ix2 - x1]
    return out


def working_mask(alpha: np.ndarray, roi, box: CropBox, threshold: float) -> np.ndarray:
    """Where the backend may repaint, at the working size: the mask's support, slightly grown so
    the whole soft edge is diffused (values in {0, 1})."""
    m = (mask_in_box(alpha, roi, box) > threshold).astype(np.uint8)
    m = cv2.resize(m, (box.size, box.size), interpolation=cv2.INTER_NEAREST)
    k = max(1, box.size // 64)
    m = cv2.dilate(m, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    return m.astype(np.float32)


def paste_square(frame: np.ndarray, refined: np.ndarray, box: CropBox, alpha: np.ndarray,
                 roi: tuple[int, int, int, int]) -> None:
    """Resize the refined crop back to the box and blend it into ``frame`` (in place) through
    ``alpha`` (over ``roi``): exactly the old pixel wherever alpha is 0."""
    fx1, fy1, fx2, fy2 = _window(frame.shape, box)
    x1, y1, x2, y2 = max(fx1, roi[0]), max(fy1, roi[1]), min(fx2, roi[2]), min(fy2, roi[3])
    if x2 <= x1 or y2 <= y1:
        return
    a = alpha[y1 - roi[1] : y2 - roi[1], x1 - roi[0] : x2 - roi[0]]
    if not a.any():
        return
    interp = cv2.INTER_AREA if box.size > box.side else cv2.INTER_CUBIC
    up = cv2.resize(refined, (box.side, box.side), interpolation=interp)
    new = up[y1 - box.y : y2 - box.y, x1 - box.x : x2 - box.x].astype(np.float32)
    region = frame[y1:y2, x1:x2]
    out = region.astype(np.float32) + a[..., None] * (new - region)
    frame[y1:y2, x1:x2] = np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class FrameJob:
    """One frame to refine: the frame (BGR, already composited, modified in place), the
    compositor's alpha over ``roi``, the frame's landmarks (may be None) and its output index."""

    frame: np.ndarray
    alpha: np.ndarray
    roi: tuple[int, int, int, int]
    landmarks: np.ndarray | None
    index: int
    box: CropBox | None = None
    crop: np.ndarray | None = None  # RGB working-size crop of the Wav2Lip result
    mask: np.ndarray | None = None
    extras: dict = field(default_factory=dict)


def prepare(jobs: Sequence[FrameJob], options: RefineOptions) -> list[FrameJob]:
    """Compute each job's crop box, RGB crop and working mask; returns the jobs with a mask."""
    ready = []
    for job in jobs:
        job.box = mouth_box(job.alpha, job.roi, options.size, options.margin, options.mask_threshold)
        if job.box is None:
            continue
        job.crop = np.ascontiguousarray(extract_square(job.frame, job.box)[:, :, ::-1])
        job.mask = working_mask(job.alpha, job.roi, job.box, options.mask_threshold)
        ready.append(job)
    return ready
