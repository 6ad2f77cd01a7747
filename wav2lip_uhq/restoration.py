"""Face restoration (GFPGAN, CodeFormer, RestoreFormer) and super-resolution for ``enhanced`` mode.

Models are user checkpoints loaded through spandrel (no basicsr/gfpgan packages). The file is
read by our own safe reader (``weights_only=True`` or safetensors) and only the tensors are
handed to spandrel, which detects the architecture. Restoration runs on square face crops,
batched across frames, and is written back only where the compositing mask is non-zero, so
its cost scales with the number of faces, not the frame size.

Value ranges: spandrel's call API promises [0, 1] in and out, but its GFPGAN and CodeFormer
wrappers pass the image straight to the network, which (like RestoreFormer) was trained on
[-1, 1] input and output. We therefore call the face networks ourselves, in [-1, 1].

Works with spandrel 0.3.4 (pinned by AUTOMATIC1111 1.10 and Forge) and 0.4.x; see
"spandrel versions" below.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import CheckpointError
from .patches import Patch
from .regions import crop_padded, square_around

if TYPE_CHECKING:
    import torch
    from spandrel import ArchRegistry, ArchSupport, ImageModelDescriptor

log = logging.getLogger(__name__)

FACE_ARCHITECTURES = ("GFPGAN", "CodeFormer", "RestoreFormer")
# Trained input size of the face networks (GFPGAN's is read from the model: it can differ).
_FACE_SIZE = {"CodeFormer": 512, "RestoreFormer": 512}

Box = tuple[int, int, int, int]


# ---------------------------------------------------------------------------- spandrel versions
# The WebUIs pin spandrel 0.3.4 (and reinstall it on every start); pip installs get 0.4.x. Both
# have the same networks, descriptors, registry and state-dict canonicalisation; what differs is
# handled here, by feature detection:
# - GFPGAN's network class is exported as ``GFPGAN`` from 0.4 on; 0.3 exports it under its own
#   name, ``GFPGANv1Clean`` (the same class, module path aside).
# - ``ArchRegistry.add(..., ignore_duplicates=True)`` is new in 0.4 (0.3 raises on a duplicate id):
#   duplicates are left out by id instead. They occur in the WebUI, which adds
#   spandrel-extra-arches to spandrel's main registry itself.


def _gfpgan_class() -> type[torch.nn.Module]:
    """spandrel's GFPGANv1Clean network class."""
    from spandrel.architectures import GFPGAN as gfpgan_arch

    return getattr(gfpgan_arch, "GFPGAN", None) or gfpgan_arch.GFPGANv1Clean


def _add_missing(registry: ArchRegistry, supports: Iterable[ArchSupport]) -> None:
    """Add the architectures whose id ``registry`` lacks (the ones it has are kept)."""
    registry.add(*(s for s in supports if s.architecture.id not in registry))


# ---------------------------------------------------------------------------- loading


@functools.lru_cache(maxsize=1)
def _registry() -> ArchRegistry:
    """spandrel's registry plus spandrel-extra-arches (CodeFormer) when installed, without
    touching spandrel's global registry."""
    from spandrel import MAIN_REGISTRY

    registry = MAIN_REGISTRY.copy()
    try:
        import spandrel_extra_arches  # type: ignore[import-not-found]
    except ImportError:
        return registry
    _add_missing(registry, spandrel_extra_arches.EXTRA_REGISTRY)
    return registry


def _read(path: str | Path) -> tuple[dict, ArchSupport]:
    """Tensors of ``path`` (never unpickling anything else) and the spandrel architecture they match."""
    from spandrel import canonicalize_state_dict

    from .models.loading import read_state_dict

    state = canonicalize_state_dict(read_state_dict(path))
    for support in _registry().architectures("detection"):
        try:
            if support.detect(state):
                return state, support
        except Exception as exc:  # noqa: BLE001 - a detector indexing a key of another layout
            log.debug("%s: spandrel's %s detector failed: %s", path, support.architecture.id, exc)
    if "idx_pred_layer.1.weight" in state and "quantize.embedding.weight" in state:
        raise CheckpointError(
            f"{path}: this looks like a CodeFormer model; CodeFormer support needs the optional "
            "package spandrel-extra-arches (pip install spandrel-extra-arches; note CodeFormer's "
            "non-commercial licence)"
        )
    raise CheckpointError(
        f"{path}: not a model architecture spandrel recognises ({len(state)} tensors, keys like {sorted(state)[:3]})"
    )


def _load(path: str | Path, state: dict, support: ArchSupport) -> ImageModelDescriptor:
    arch_id = str(support.architecture.id)
    try:
        return support.architecture.load(state)  # type: ignore[return-value]
    except Exception as exc:
        if arch_id == "GFPGAN":
            # spandrel builds GFPGAN at 512 px only; other sizes have the same layout.
            return _load_gfpgan_any_size(path, state, support)
        raise CheckpointError(
            f"{path}: looks like a {arch_id} model but its weights do not fit that architecture "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from exc


def _count(state: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def gfpgan_hyperparameters(state: dict) -> dict:
    """GFPGANv1Clean constructor arguments read from the weights (spandrel assumes 512 px)."""
    import torch

    gfpgan = _gfpgan_class()
    n_style = state["stylegan_decoder.style_mlp.1.weight"].shape[0]
    params = {
        "out_size": 2 ** (_count(state, "conv_body_down") + 2),
        "num_style_feat": n_style,
        "num_mlp": sum(1 for k in state if re.fullmatch(r"stylegan_decoder\.style_mlp\.\d+\.weight", k)),
        "narrow": state["stylegan_decoder.constant_input.weight"].shape[1] / 512,
        "different_w": state["final_linear.weight"].shape[0] != n_style,
        "sft_half": state["condition_scale.0.2.weight"].shape[0]
        == state["condition_scale.0.0.weight"].shape[0],
    }
    have = {k: tuple(v.shape) for k, v in state.items()}
    for multiplier in (2, 1, 4):  # not stored anywhere: the one whose shapes match
        with torch.device("meta"):
            model = gfpgan(channel_multiplier=multiplier, **params)
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} == have:
            return {**params, "channel_multiplier": multiplier}
    raise ValueError(f"no GFPGAN layout matches these weights (read {params})")


def _load_gfpgan_any_size(path: str | Path, state: dict, support: ArchSupport) -> ImageModelDescriptor:
    from spandrel import ImageModelDescriptor, SizeRequirements

    try:
        params = gfpgan_hyperparameters(state)
    except (KeyError, IndexError, ValueError) as exc:
        raise CheckpointError(f"{path}: looks like a GFPGAN model but its layout is unknown ({exc})") from exc
    model = _gfpgan_class()(**params)
    return ImageModelDescriptor(
        model,
        state,
        architecture=support.architecture,
        purpose="FaceSR",
        tags=[f"{params['out_size']}px"],
        supports_half=False,
        supports_bfloat16=True,
        scale=1,
        input_channels=3,
        output_channels=3,
        size_requirements=SizeRequirements(minimum=params["out_size"]),
        call_fn=lambda m, image: m(image)[0],
    )


def _auto_dtype(descriptor: ImageModelDescriptor, device: torch.device) -> torch.dtype:
    """fp16 where spandrel says the architecture tolerates it, else bf16, on CUDA; fp32 elsewhere.
    (spandrel marks GFPGAN, CodeFormer and RestoreFormer as not fp16-safe.)"""
    import torch

    if device.type != "cuda":
        return torch.float32
    if descriptor.supports_half:
        return torch.float16
    if descriptor.supports_bfloat16 and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _prepare(descriptor: ImageModelDescriptor, device: str, dtype: torch.dtype | None):
    import torch

    dev = torch.device(device)
    descriptor.to(dev).eval()
    dt = dtype or _auto_dtype(descriptor, dev)
    descriptor.to(dt)
    return dev, dt


def _to_tensor(images_bgr: Sequence[np.ndarray], device, dtype) -> torch.Tensor:
    """Same-size BGR uint8 images -> (N, 3, H, W) RGB in [0, 1]."""
    import torch

    batch = np.ascontiguousarray(np.stack(images_bgr)[..., ::-1].transpose(0, 3, 1, 2))
    return torch.from_numpy(batch).to(device).to(dtype).div_(255.0)


def _to_images(x: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, H, W) RGB in [0, 1] -> BGR uint8 images."""
    import torch

    out = x.float().clamp_(0, 1).mul_(255).round_().to("cpu", dtype=torch.uint8).numpy()
    return [np.ascontiguousarray(im.transpose(1, 2, 0)[..., ::-1]) for im in out]


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrink = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


# ---------------------------------------------------------------------------- models


class FaceRestorer:
    """A face-restoration network (GFPGAN, CodeFormer, RestoreFormer) run on batches of face crops."""

    def __init__(
        self,
        descriptor: ImageModelDescriptor,
        *,
        device: str = "cpu",
        fidelity: float = 0.5,
        batch_size: int = 8,
        dtype: torch.dtype | None = None,
        name: str = "",
    ) -> None:
        self.arch = str(descriptor.architecture.id)
        if self.arch not in FACE_ARCHITECTURES or descriptor.purpose != "FaceSR":
            raise CheckpointError(
                f"{name or 'model'}: this is a {self.arch} model ({_describe(descriptor)}), not a face-restoration "
                f"model ({', '.join(FACE_ARCHITECTURES)})"
            )
        if not 0.0 <= fidelity <= 1.0:
            raise ValueError(f"fidelity must be in [0, 1], got {fidelity}")
        self.descriptor = descriptor
        self.fidelity = fidelity
        self.batch_size = max(1, int(batch_size))
        self.name = name
        self.device, self.dtype = _prepare(descriptor, device, dtype)
        model = descriptor.model
        self.size = 2**model.log_size if self.arch == "GFPGAN" else _FACE_SIZE[self.arch]

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        device: str = "cpu",
        fidelity: float = 0.5,
        batch_size: int = 8,
        dtype: torch.dtype | None = None,
    ) -> FaceRestorer:
        """Load a face-restoration checkpoint (.pth/.safetensors); ``fidelity`` is CodeFormer's ``w``
        (0 = strongest restoration, 1 = closest to the input), ignored by the others."""
        state, support = _read(path)
        arch_id = str(support.architecture.id)
        if arch_id not in FACE_ARCHITECTURES:
            # Rejected before building it: the model may be large.
            raise CheckpointError(
                f"{path}: this is a {arch_id} model (spandrel architecture), not a face-restoration model "
                f"({', '.join(FACE_ARCHITECTURES)}); super-resolution models go to the upscaler"
            )
        descriptor = _load(path, state, support)
        restorer = cls(
            descriptor, device=device, fidelity=fidelity, batch_size=batch_size, dtype=dtype, name=str(path)
        )
        log.info(
            "loaded face restorer %s (%d px, %s) from %s", restorer.arch, restorer.size, restorer.dtype, path
        )
        return restorer

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB in and out; the networks themselves work in [-1, 1]."""
        model = self.descriptor.model
        x = x * 2 - 1
        if self.arch == "GFPGAN":
            # The stored noise maps, not fresh noise: deterministic, no frame-to-frame flicker.
            y = model(x, return_rgb=False, randomize_noise=False)[0]
        elif self.arch == "CodeFormer":
            y = model(x, weight=self.fidelity)[0]
        else:
            y = model(x)[0]
        return (y.clamp(-1, 1) + 1) / 2

    def restore(self, faces_bgr: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Restore BGR uint8 face crops of any size; each comes back at its own size."""
        import torch

        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(faces_bgr), self.batch_size):
                chunk = faces_bgr[start : start + self.batch_size]
                x = _to_tensor([_resize(f, self.size, self.size) for f in chunk], self.device, self.dtype)
                restored = _to_images(self._forward(x))
                out.extend(_resize(r, f.shape[1], f.shape[0]) for r, f in zip(restored, chunk))
        return out


class Upscaler:
    """A spandrel super-resolution model (Real-ESRGAN, SRVGGNetCompact, ...), batched by image size."""

    def __init__(
        self,
        descriptor: ImageModelDescriptor,
        *,
        device: str = "cpu",
        batch_size: int = 16,
        dtype: torch.dtype | None = None,
        name: str = "",
    ) -> None:
        arch = str(descriptor.architecture.id)
        if descriptor.purpose != "SR" or descriptor.scale < 2 or descriptor.input_channels != 3:
            raise CheckpointError(
                f"{name or 'model'}: this is a {arch} model ({_describe(descriptor)}), not a 3-channel "
                "super-resolution model"
            )
        self.descriptor = descriptor
        self.arch = arch
        self.scale = int(descriptor.scale)
        self.batch_size = max(1, int(batch_size))
        self.device, self.dtype = _prepare(descriptor, device, dtype)

    @classmethod
    def from_file(
        cls, path: str | Path, device: str = "cpu", batch_size: int = 16, dtype: torch.dtype | None = None
    ) -> Upscaler:
        state, support = _read(path)
        arch_id = str(support.architecture.id)
        if arch_id in FACE_ARCHITECTURES:
            raise CheckpointError(
                f"{path}: this is a {arch_id} face-restoration model, not a super-resolution model; "
                "use it as the face restorer"
            )
        upscaler = cls(
            _load(path, state, support), device=device, batch_size=batch_size, dtype=dtype, name=str(path)
        )
        log.info("loaded upscaler %s (x%d, %s) from %s", upscaler.arch, upscaler.scale, upscaler.dtype, path)
        return upscaler

    def upscale(self, images_bgr: Sequence[np.ndarray]) -> list[np.ndarray]:
        """BGR uint8 images -> the same, ``scale`` times larger; same-size images share a batch."""
        import torch

        out: list[np.ndarray | None] = [None] * len(images_bgr)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images_bgr):
            by_shape.setdefault(image.shape, []).append(i)
        with torch.inference_mode():
            for indices in by_shape.values():
                for start in range(0, len(indices), self.batch_size):
                    idx = indices[start : start + self.batch_size]
                    x = _to_tensor([images_bgr[i] for i in idx], self.device, self.dtype)
                    for i, image in zip(idx, _to_images(self.descriptor(x))):
                        out[i] = image
        return out  # type: ignore[return-value]


def _describe(descriptor: ImageModelDescriptor) -> str:
    kind = {"SR": f"super-resolution x{descriptor.scale}", "FaceSR": "face restoration"}
    return kind.get(descriptor.purpose, descriptor.purpose.lower())


# ---------------------------------------------------------------------------- compositing


def blend(original: np.ndarray, restored: np.ndarray, weight: np.ndarray | float) -> np.ndarray:
    """``original + weight * (restored - original)`` in uint8; pixels with weight 0 are returned
    bit-identical (``weight`` is a scalar or an (H, W) map)."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim == 2:
        w = w[..., None]
    orig = original.astype(np.float32)
    mixed = np.clip(np.rint(orig + w * (restored.astype(np.float32) - orig)), 0, 255).astype(np.uint8)
    return np.where(w > 0, mixed, original)


def face_crop(box: Box, margin: float = 0.3) -> Box:
    """The square restoration crop around ``box``: its longer side plus ``margin`` of it on each
    side (the framing of the aligned faces these networks were trained on). May leave the frame."""
    return square_around(box, margin)


def restore_patches(
    frames: Sequence[np.ndarray],
    boxes: Sequence[Box | None],
    masks: Sequence[np.ndarray | None],
    restorer: FaceRestorer,
    strength: float = 1.0,
    margin: float = 0.3,
) -> list[Patch | None]:
    """Restore the face of each frame with one batched model call: per frame, the patch
    ``orig + mask * strength * (restored - orig)`` over its box, or None (nothing to change).

    ``boxes[i]`` is (x1, y1, x2, y2) in frame pixels or None (no face); ``masks[i]`` is float32
    (y2 - y1, x2 - x1) in [0, 1]. The frames are only read. Where the mask is 0 the patch keeps
    the frame's pixels bit-identical; strength 0 or an empty mask costs nothing.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if not len(frames) == len(boxes) == len(masks):
        raise ValueError(f"{len(frames)} frames, {len(boxes)} boxes and {len(masks)} masks")
    jobs: list[tuple[int, Box, Box, np.ndarray]] = []
    for i, (frame, box, mask) in enumerate(zip(frames, boxes, masks)):
        if box is None or mask is None or strength == 0.0:
            continue
        x1, y1, x2, y2 = (int(v) for v in box)
        h, w = frame.shape[:2]
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise ValueError(f"box {box} is not inside the {w}x{h} frame")
        mask = np.asarray(mask, dtype=np.float32)
        if mask.ndim == 3:
            mask = mask[..., 0]
        if mask.shape != (y2 - y1, x2 - x1):
            raise ValueError(f"mask shape {mask.shape} does not match box {box} ({y2 - y1}x{x2 - x1})")
        if not (mask > 0).any():
            continue
        jobs.append((i, (x1, y1, x2, y2), face_crop((x1, y1, x2, y2), margin), mask))
    patches: list[Patch | None] = [None] * len(frames)
    if not jobs:
        return patches
    restored = restorer.restore([crop_padded(frames[i], crop) for i, _, crop, _ in jobs])
    for (i, (x1, y1, x2, y2), (cx, cy, _, _), mask), face in zip(jobs, restored):
        region = frames[i][y1:y2, x1:x2]
        inside = face[y1 - cy : y2 - cy, x1 - cx : x2 - cx]
        patches[i] = Patch((x1, y1, x2, y2), blend(region, inside, mask * strength))
    return patches


def restore_regions(
    frames: Sequence[np.ndarray],
    boxes: Sequence[Box | None],
    masks: Sequence[np.ndarray | None],
    restorer: FaceRestorer,
    strength: float = 1.0,
    margin: float = 0.3,
) -> list[np.ndarray]:
    """:func:`restore_patches`, written into the frames: they are modified in place and returned."""
    for frame, patch in zip(frames, restore_patches(frames, boxes, masks, restorer, strength, margin)):
        if patch is not None:
            patch.apply(frame)
    return list(frames)


def restore_region(
    frame: np.ndarray,
    box: Box,
    mask: np.ndarray,
    restorer: FaceRestorer,
    strength: float = 1.0,
    margin: float = 0.3,
) -> np.ndarray:
    """One frame of :func:`restore_regions` (the pipeline batches; this is for single images)."""
    return restore_regions([frame], [box], [mask], restorer, strength, margin)[0]
