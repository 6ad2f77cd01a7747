"""Optional face-parsing mask: keep Wav2Lip's mouth off hair, hands, glasses and other occluders.

The parser is the widely used BiSeNet face parser (``79999_iter.pth`` of
zllrunning/face-parsing.PyTorch, 19 CelebAMask-HQ classes), loaded unchanged from a
user-supplied file: the module names below reproduce that checkpoint's state-dict layout
exactly (``cp.resnet.*``, ``cp.arm16.*``, ``ffm.convblk.*``, ``conv_out.conv_out.weight``, ...).
The file is read with ``weights_only=True`` (or safetensors) and refused unless every key and
shape matches.

Only the class map is used: ``occlusion_mask`` turns it into a soft alpha that is 1 on the
face parts Wav2Lip may change (skin, nose, mouth, lips) and 0 on everything in front of them
or beside them, so a compositor can multiply its own mask by it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import CheckpointError
from .regions import crop_padded, square_around

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

N_CLASSES = 19
CLASSES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)  # fmt: skip
# What Wav2Lip may repaint: skin, nose, mouth (inner), upper and lower lip.
KEEP = (1, 10, 11, 12, 13)
INPUT_SIZE = 512  # the parser's training resolution
_MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, RGB
_STD = (0.229, 0.224, 0.225)

Box = tuple[int, int, int, int]


# ---------------------------------------------------------------------------- network


@functools.lru_cache(maxsize=1)
def _modules():
    """The network's classes, defined on first use so that importing this module needs no torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ConvBNReLU(nn.Module):
        def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    class BasicBlock(nn.Module):
        """ResNet basic block; the projection shortcut is ``downsample.0`` (conv) + ``.1`` (bn)."""

        def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if cin != cout or stride != 1:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            shortcut = x if self.downsample is None else self.downsample(x)
            return F.relu(shortcut + residual)

    def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))

    class ResNet18(nn.Module):
        """ResNet-18 without its classifier; returns the 1/8, 1/16 and 1/32 features."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = stage(64, 64, 1)
            self.layer2 = stage(64, 128, 2)
            self.layer3 = stage(128, 256, 2)
            self.layer4 = stage(256, 512, 2)

        def forward(self, x):
            x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
            feat8 = self.layer2(x)
            feat16 = self.layer3(feat8)
            return feat8, feat16, self.layer4(feat16)

    class AttentionRefinementModule(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv = ConvBNReLU(cin, cout)
            self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
            self.bn_atten = nn.BatchNorm2d(cout)

        def forward(self, x):
            feat = self.conv(x)
            attention = torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))
            return feat * attention

    class ContextPath(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.resnet = ResNet18()
            self.arm16 = AttentionRefinementModule(256, 128)
            self.arm32 = AttentionRefinementModule(512, 128)
            self.conv_head32 = ConvBNReLU(128, 128)
            self.conv_head16 = ConvBNReLU(128, 128)
            self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

        def forward(self, x):
            feat8, feat16, feat32 = self.resnet(x)
            # global context, broadcast over the 1/32 map (upstream: nearest upsampling of a 1x1 map)
            context = self.conv_avg(F.adaptive_avg_pool2d(feat32, 1))
            up32 = F.interpolate(self.arm32(feat32) + context, size=feat16.shape[2:], mode="nearest")
            up32 = self.conv_head32(up32)
            up16 = F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[2:], mode="nearest")
            up16 = self.conv_head16(up16)
            return feat8, up16, up32

    class FeatureFusionModule(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
            self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
            self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

        def forward(self, spatial, context):
            feat = self.convblk(torch.cat([spatial, context], dim=1))
            attention = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
            return feat * attention + feat

    class BiSeNetOutput(nn.Module):
        def __init__(self, cin: int, mid: int, n_classes: int) -> None:
            super().__init__()
            self.conv = ConvBNReLU(cin, mid)
            self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

        def forward(self, x):
            return self.conv_out(self.conv(x))

    class BiSeNet(nn.Module):
        """BiSeNet face parser in the layout of ``79999_iter.pth``; the spatial path is the
        ResNet's 1/8 feature (as upstream). ``forward`` returns the main head's logits at the
        input resolution; the auxiliary heads ``conv_out16``/``conv_out32`` (training only) exist
        so that the checkpoint loads unchanged."""

        def __init__(self, n_classes: int = N_CLASSES) -> None:
            super().__init__()
            self.cp = ContextPath()
            self.ffm = FeatureFusionModule(256, 256)
            self.conv_out = BiSeNetOutput(256, 256, n_classes)
            self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
            self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

        def forward(self, x):
            feat8, context8, _ = self.cp(x)
            logits = self.conv_out(self.ffm(feat8, context8))
            return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=True)

    return BiSeNet


def BiSeNet(n_classes: int = N_CLASSES) -> nn.Module:
    """A BiSeNet face parser with the exact state-dict layout of ``79999_iter.pth``."""
    return _modules()(n_classes)


@functools.cache
def _signature(n_classes: int = N_CLASSES) -> dict[str, tuple[int, ...]]:
    import torch

    with torch.device("meta"):
        model = BiSeNet(n_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def check_state_dict(state: dict, path: str | Path = "<state_dict>") -> None:
    """Raise CheckpointError unless ``state`` has exactly the 19-class parser's keys and shapes
    (``num_batches_tracked`` may be absent: old PyTorch versions did not save it)."""
    have = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    want = _signature()
    if have == want:
        return
    if not any(k.startswith("cp.resnet.") for k in have):
        if "conv1.weight" in have and any(k.startswith("layer4.") for k in have):
            raise CheckpointError(
                f"{path}: this is a plain ResNet backbone (e.g. resnet18-5c106cde.pth), not the face parser; "
                "pass the trained BiSeNet face-parsing checkpoint (79999_iter.pth)"
            )
        raise CheckpointError(
            f"{path}: not a BiSeNet face-parsing checkpoint (expected keys like cp.resnet.conv1.weight, "
            f"found {sorted(have)[:3]})"
        )
    head = have.get("conv_out.conv_out.weight")
    if head is not None and head[0] != N_CLASSES and head[1:] == want["conv_out.conv_out.weight"][1:]:
        raise CheckpointError(
            f"{path}: a BiSeNet parser with {head[0]} classes; the 19-class CelebAMask-HQ face parser "
            "(79999_iter.pth) is needed"
        )
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    wrong = [f"{k} {have[k]} (expected {want[k]})" for k in want if k in have and have[k] != want[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} with other shapes (e.g. {'; '.join(wrong[:3])})")
    raise CheckpointError(f"{path}: not the BiSeNet face-parser layout: {', '.join(problems)}")


# ---------------------------------------------------------------------------- inference


def _resize_to(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrink = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class FaceParser:
    """The BiSeNet face parser run on batches of BGR face crops; returns CelebAMask-HQ label maps."""

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str = "cpu",
        batch_size: int = 8,
        size: int = INPUT_SIZE,
        name: str = "",
    ) -> None:
        import torch

        self.device = torch.device(device)
        # fp16 on CUDA: a plain conv net with BatchNorm folded into eval mode, safe in half precision.
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = model.eval().to(self.device, self.dtype)
        self.batch_size = max(1, int(batch_size))
        self.size = int(size)
        self.name = name
        self._mean = torch.tensor(_MEAN, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(_STD, device=self.device).view(1, 3, 1, 1) * 255

    @classmethod
    def from_file(cls, path: str | Path, device: str = "cpu", batch_size: int = 8) -> FaceParser:
        """Load ``79999_iter.pth`` (a bare state dict; ``module.`` prefixes, training dicts and
        .safetensors are accepted too); anything whose keys or shapes differ is refused."""
        from .models.loading import read_state_dict

        state = read_state_dict(path)  # weights_only=True / safetensors, clear errors, module. stripped
        check_state_dict(state, path)
        model = BiSeNet()
        model.load_state_dict(state, strict=False)  # only num_batches_tracked may be absent (checked above)
        parser = cls(model, device=device, batch_size=batch_size, name=str(path))
        log.info("loaded face parser from %s (%s, %s)", path, parser.device, parser.dtype)
        return parser

    def _labels(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) BGR uint8 -> (N, S, S) uint8 labels."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch[..., ::-1].transpose(0, 3, 1, 2))).to(self.device)
        x = ((x.float() - self._mean) / self._std).to(self.dtype)
        return self.model(x).argmax(1).to("cpu", torch.uint8).numpy()

    def parse(self, crops_bgr: Sequence[np.ndarray]) -> list[np.ndarray]:
        """uint8 (H, W) label maps (0..18, see ``CLASSES``), one per BGR uint8 crop, at each
        crop's own size. Crops are resized to the parser's 512 px, run in batches, and the labels
        resized back with nearest neighbour."""
        import torch

        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(crops_bgr), self.batch_size):
                chunk = crops_bgr[start : start + self.batch_size]
                for crop in chunk:
                    if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] == 0 or crop.shape[1] == 0:
                        raise ValueError(f"expected non-empty BGR (H, W, 3) crops, got shape {crop.shape}")
                labels = self._labels(np.stack([_resize_to(c, self.size) for c in chunk]))
                out.extend(
                    cv2.resize(lab, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_NEAREST)
                    if lab.shape != c.shape[:2]
                    else lab
                    for lab, c in zip(labels, chunk)
                )
        return out


# ---------------------------------------------------------------------------- masks


def occlusion_mask(labels: np.ndarray, keep: Sequence[int] = KEEP, soften_px: float = 3.0) -> np.ndarray:
    """float32 (H, W) in [0, 1]: 1 where a ``keep`` class is visible, 0 elsewhere (hair, hands and
    other occluders, which the parser sees as background inside the face, glasses, cloth, ...).

    The soft edge lies entirely inside the kept region (alpha rises from 0 at its outline to 1 at
    ``soften_px`` inside), so occluder pixels stay exactly 0 and the mask adds no hard edge.
    """
    hard = np.isin(labels, np.asarray(keep)).astype(np.uint8)
    if soften_px <= 0 or not hard.any() or hard.all():
        return hard.astype(np.float32)
    # distance (pixel centres) to the nearest excluded pixel; the image border is not an edge
    inside = cv2.distanceTransform(hard, cv2.DIST_L2, 5)
    t = np.clip((inside - 0.5) / float(soften_px), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32) * hard


def parsing_masks_for_rois(
    frames: Sequence[np.ndarray],
    rois: Sequence[Box | None],
    parser: FaceParser,
    keep: Sequence[int] = KEEP,
    soften_px: float = 3.0,
    margin: float = 0.2,
) -> list[np.ndarray | None]:
    """For each frame, the occlusion mask (float32, (y2 - y1, x2 - x1)) over its ROI (x1, y1, x2, y2),
    or None where the ROI is None. All crops go through the parser in one batched call.

    Each ROI is parsed in a square crop around it, ``margin`` of its longer side added on each
    side (the parser was trained on whole, centred faces; parts outside the frame are filled by
    replicating its border); the mask is computed on the whole crop, so its soft edge does not
    depend on where the ROI ends, and then cut to the ROI.
    """
    if len(frames) != len(rois):
        raise ValueError(f"{len(frames)} frames and {len(rois)} rois")
    jobs: list[tuple[int, Box, Box]] = []
    for i, (frame, roi) in enumerate(zip(frames, rois)):
        if roi is None:
            continue
        x1, y1, x2, y2 = (int(v) for v in roi)
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"empty roi {roi}")
        jobs.append((i, (x1, y1, x2, y2), square_around((x1, y1, x2, y2), margin)))
    out: list[np.ndarray | None] = [None] * len(frames)
    if not jobs:
        return out
    labels = parser.parse([crop_padded(frames[i], crop) for i, _, crop in jobs])
    for (i, (x1, y1, x2, y2), (cx, cy, _, _)), lab in zip(jobs, labels):
        mask = occlusion_mask(lab, keep, soften_px)
        out[i] = np.ascontiguousarray(mask[y1 - cy : y2 - cy, x1 - cx : x2 - cx])
    return out


def parsing_mask_for_roi(
    frame: np.ndarray,
    roi: Box,
    parser: FaceParser,
    keep: Sequence[int] = KEEP,
    soften_px: float = 3.0,
    margin: float = 0.2,
) -> np.ndarray:
    """The occlusion mask over one frame's ROI: float32 (y2 - y1, x2 - x1) in [0, 1]."""
    return parsing_masks_for_rois([frame], [roi], parser, keep, soften_px, margin)[0]  # type: ignore[return-value]
