"""68-point facial landmarks for a known face box, and their temporal smoothing.

Backends: ``fan`` (face-alignment's 2D-FAN, weights from the models folder) and ``dlib``
(the 68-point predictor shipped by ``face_recognition_models``, offline, CPU).
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import Wav2LipUHQError
from .track import valid_runs

log = logging.getLogger(__name__)

LANDMARK_BACKENDS = ("fan", "dlib")
LANDMARK_SMOOTHING = ("savgol", "none")


class LandmarkDetector(ABC):
    name = "base"

    def settings(self) -> dict:
        return {"landmarks": self.name}

    @abstractmethod
    def landmarks(self, frames_bgr: Sequence[np.ndarray], boxes: np.ndarray) -> np.ndarray:
        """(N, 68, 2) points for one box (x1, y1, x2, y2) per BGR frame; NaN rows for NaN boxes.
        Only the face region is converted and read, never the whole frame."""


class DlibLandmarks(LandmarkDetector):
    name = "dlib"

    def __init__(self) -> None:
        import dlib

        from .detection import dlib_model_path

        self._predictor = dlib.shape_predictor(str(dlib_model_path()))
        self._dlib = dlib

    def landmarks(self, frames_bgr, boxes):
        import cv2

        out = np.full((len(frames_bgr), 68, 2), np.nan, np.float32)
        for i, (frame, box) in enumerate(zip(frames_bgr, boxes)):
            if np.isnan(box[0]):
                continue
            # dlib's predictor was trained on its HOG boxes (brows to lip-chin): shrink ours to that.
            x1, y1, x2, y2 = (float(v) for v in box[:4])
            h, w = y2 - y1, x2 - x1
            # the face region with a margin, in RGB (dlib's order)
            cx1, cy1 = max(0, int(x1 - 0.25 * w)), max(0, int(y1 - 0.25 * h))
            cx2, cy2 = min(frame.shape[1], int(x2 + 0.25 * w)), min(frame.shape[0], int(y2 + 0.25 * h))
            region = cv2.cvtColor(frame[cy1:cy2, cx1:cx2], cv2.COLOR_BGR2RGB)
            rect = self._dlib.rectangle(int(x1) - cx1, int(y1 + 0.2 * h) - cy1, int(x2) - cx1, int(y2) - cy1)
            shape = self._predictor(region, rect)
            out[i] = [(p.x + cx1, p.y + cy1) for p in shape.parts()]
        return out


class FANLandmarks(LandmarkDetector):
    """face-alignment's FAN on 256x256 crops, batched; GPU when available."""

    name = "fan"

    def __init__(self, model_path: str | Path, device: str = "cpu", batch_size: int = 16) -> None:
        from ..models.loading import torch_load

        try:
            from face_alignment.models.fan import FAN
        except ImportError as exc:
            raise Wav2LipUHQError(
                "the fan landmark backend needs face-alignment: pip install 'wav2lip-uhq[faces]'"
            ) from exc
        path = Path(model_path)
        if not path.is_file():
            raise Wav2LipUHQError(f"{path}: FAN landmark weights not found")
        try:
            state = torch_load(path)
        except Exception as exc:
            raise Wav2LipUHQError(f"{path}: not a FAN state dict ({exc})") from exc
        n_modules = len({k.split(".")[0] for k in state if k.startswith("m")})
        net = FAN(max(1, n_modules))
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise Wav2LipUHQError(f"{path}: weights do not fit face-alignment's FAN ({exc})") from exc
        self.net = net.eval().to(device)
        self.device, self.batch_size = device, batch_size

    def landmarks(self, frames_bgr, boxes):
        import cv2
        import torch

        out = np.full((len(frames_bgr), 68, 2), np.nan, np.float32)
        todo = [i for i, b in enumerate(boxes) if not np.isnan(b[0])]
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            crops, mats = [], []
            for i in idx:
                m = fan_crop_matrix(boxes[i][:4])
                crop = cv2.warpAffine(frames_bgr[i], m, (256, 256), flags=cv2.INTER_LINEAR)
                crops.append(crop[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0)  # RGB, CHW
                mats.append(m)
            with torch.inference_mode():
                heat = self.net(torch.from_numpy(np.stack(crops)).to(self.device))
                heat = (heat[-1] if isinstance(heat, (list, tuple)) else heat).float().cpu().numpy()
            for k, i in enumerate(idx):
                pts = heatmap_peaks(heat[k]) * 4.0  # 64x64 heatmaps over the 256x256 crop
                inv = cv2.invertAffineTransform(mats[k])
                out[i] = pts @ inv[:, :2].T + inv[:, 2]
        return out


def fan_crop_matrix(box) -> np.ndarray:
    """Frame -> 256x256 FAN input: face-alignment's framing (centre raised by 0.12 of the box
    height, side 200 * (w + h) / 195 pixels)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 - (y2 - y1) * 0.12
    side = 200.0 * ((x2 - x1) + (y2 - y1)) / 195.0
    s = 256.0 / side
    return np.array([[s, 0, 128 - s * cx], [0, s, 128 - s * cy]], np.float64)


def heatmap_peaks(heat: np.ndarray) -> np.ndarray:
    """(68, 2) sub-pixel peaks of (68, 64, 64) heatmaps: the argmax moved a quarter pixel toward
    the higher neighbour, at pixel centres (face-alignment's decoding, vectorised)."""
    n, h, w = heat.shape
    flat = heat.reshape(n, -1).argmax(1)
    y, x = np.divmod(flat, w)
    pts = np.stack([x, y], 1).astype(np.float64)
    inner = (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
    j = np.arange(n)[inner]
    xi, yi = x[inner], y[inner]
    dx = heat[j, yi, xi + 1] - heat[j, yi, xi - 1]
    dy = heat[j, yi + 1, xi] - heat[j, yi - 1, xi]
    pts[inner] += 0.25 * np.stack([np.sign(dx), np.sign(dy)], 1)
    return pts + 0.5


def create_landmark_detector(
    name: str, device: str = "cpu", model_path: str | Path | None = None
) -> LandmarkDetector:
    if name == "dlib":
        return DlibLandmarks()
    if name == "fan":
        if model_path is None:
            raise Wav2LipUHQError(
                "the fan landmark backend needs its weights (2DFAN4 .pth.tar) in the models folder"
            )
        return FANLandmarks(model_path, device)
    raise Wav2LipUHQError(f"unknown landmark backend {name!r} (choose from {', '.join(LANDMARK_BACKENDS)})")


@functools.lru_cache(maxsize=64)
def savgol_coefficients(window: int, order: int) -> np.ndarray:
    """Weights of the centre sample of a least-squares polynomial fit (Savitzky-Golay)."""
    half = window // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    vander = np.vander(x, order + 1, increasing=True)
    return np.linalg.pinv(vander)[0]


def smooth_landmarks(
    points: np.ndarray, method: str = "savgol", window: int = 7, order: int = 2
) -> np.ndarray:
    """Zero-lag smoothing of (N, 68, 2) landmark tracks within runs of frames that have a face.

    A centred local quadratic fit (Savitzky-Golay) follows steady and accelerating motion
    without lag (a causal One-Euro or EMA filter trails fast motion) while averaging out
    per-frame jitter; ``bench/bench_landmark_smoothing.py`` compares them.
    """
    if method == "none":
        return points.copy()
    if method != "savgol":
        raise ValueError(f"unknown landmark smoothing {method!r}")
    out = points.astype(np.float32).copy()
    for i, j in valid_runs(~np.isnan(points[:, 0, 0])):
        seg = points[i:j].astype(np.float64)
        for t in range(len(seg)):
            half = min(window // 2, t, len(seg) - 1 - t)  # shrink symmetrically at run edges
            if half == 0:
                continue
            w = savgol_coefficients(2 * half + 1, min(order, 2 * half))
            out[i + t] = np.tensordot(w, seg[t - half : t + half + 1], axes=(0, 0))
    return out
