"""Face detector backends behind one interface.

- ``s3fd``: face-alignment's S3FD, the detector upstream Wav2Lip uses; batched, GPU when available.
- ``dlib``: dlib's HOG detector + the 68-point predictor shipped by ``face_recognition_models``;
  CPU, offline (no download), boxes normalised to S3FD's forehead-to-chin convention.
- ``box``: a fixed box for every frame (upstream's ``--box``).
"""

from __future__ import annotations

import importlib.util
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import Wav2LipUHQError

log = logging.getLogger(__name__)

DETECTORS = ("s3fd", "dlib")


class FaceDetector(ABC):
    """Finds faces: ``detect(frames_rgb)`` -> per frame an array (K, 5) of x1, y1, x2, y2, score."""

    name: str = "base"

    def __init__(self, max_size: int | None = None) -> None:
        self.max_size = max_size  # frames larger than this are downscaled for detection (speed)

    def settings(self) -> dict:
        """What changes the result: part of the detection cache key."""
        return {"detector": self.name, "max_size": self.max_size}

    def _scale(self, frame: np.ndarray) -> float:
        if not self.max_size:
            return 1.0
        return min(1.0, self.max_size / max(frame.shape[:2]))

    @abstractmethod
    def detect(self, frames_rgb: Sequence[np.ndarray]) -> list[np.ndarray]: ...

    @staticmethod
    def _resize(frames: Sequence[np.ndarray], scale: float) -> list[np.ndarray]:
        if scale == 1.0:
            return list(frames)
        import cv2

        return [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames]


class S3FDDetector(FaceDetector):
    name = "s3fd"

    def __init__(
        self,
        device: str = "cpu",
        model_path: str | Path | None = None,
        batch_size: int = 16,
        threshold: float = 0.5,
        max_size: int | None = None,
    ) -> None:
        super().__init__(max_size)
        try:
            from face_alignment.detection.sfd.sfd_detector import SFDDetector
        except ImportError as exc:
            raise Wav2LipUHQError(
                "the s3fd detector needs face-alignment: pip install 'wav2lip-uhq[faces]' (or use --detector dlib)"
            ) from exc
        self.device = str(device)
        self.batch_size = batch_size
        if model_path is not None and not Path(model_path).is_file():
            raise Wav2LipUHQError(f"{model_path}: S3FD weights not found")
        try:
            self._det = SFDDetector(
                self.device,
                path_to_detector=str(model_path) if model_path else None,
                filter_threshold=threshold,
            )
        except (OSError, RuntimeError) as exc:  # urllib errors are OSErrors
            raise Wav2LipUHQError(
                "could not load the S3FD face detector weights "
                f"({exc}); offline, put s3fd.pth into the models folder or use --detector dlib"
            ) from exc
        self.threshold = threshold

    def settings(self) -> dict:
        return {**super().settings(), "threshold": self.threshold}

    def detect(self, frames_rgb: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        if not frames_rgb:
            return []
        scale = self._scale(frames_rgb[0])
        small = self._resize(frames_rgb, scale)
        out: list[np.ndarray] = []
        batch = self.batch_size
        i = 0
        while i < len(small):
            chunk = np.stack(small[i : i + batch])
            tensor = torch.from_numpy(chunk).permute(0, 3, 1, 2).float()
            try:
                with torch.inference_mode():
                    found = self._det.detect_from_batch(tensor)
            except RuntimeError as exc:  # out of memory: retry with smaller batches
                if batch == 1 or "out of memory" not in str(exc).lower():
                    raise
                batch = max(1, batch // 2)
                log.warning("face detection ran out of memory; batch size now %d", batch)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            for boxes in found:
                arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
                arr[:, :4] /= scale
                out.append(arr)
            i += len(chunk)
        return out


def dlib_model_path(name: str = "shape_predictor_68_face_landmarks.dat") -> Path:
    """Path of a model file shipped by ``face_recognition_models`` (found without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise Wav2LipUHQError(
            "the dlib detector needs face_recognition_models: pip install 'wav2lip-uhq[faces]'"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise Wav2LipUHQError(f"{path}: dlib model file missing from face_recognition_models")
    return path


class DlibDetector(FaceDetector):
    """HOG detection + 68 landmarks; the box spans the landmarks (brows to chin, jaw width)
    extended upward by a quarter of the face height, which matches S3FD boxes."""

    name = "dlib"

    def __init__(
        self, upsample: int | None = None, max_size: int | None = 720, threshold: float = 0.3
    ) -> None:
        super().__init__(max_size)
        self.threshold = threshold  # HOG scores below this are mostly false positives
        try:
            import dlib
        except ImportError as exc:
            raise Wav2LipUHQError("the dlib detector needs dlib: pip install 'wav2lip-uhq[faces]'") from exc
        self.upsample = upsample  # None: 1 for small frames (finds ~40 px faces), 0 from 640 px up
        self._det = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model_path()))
        self._dlib = dlib

    def settings(self) -> dict:
        return {**super().settings(), "upsample": self.upsample, "threshold": self.threshold}

    def landmarks(self, frame_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(K, 68, 2) landmarks inside the given (K, 4+) boxes (full-resolution coordinates)."""
        out = []
        for x1, y1, x2, y2 in np.asarray(boxes)[:, :4]:
            rect = self._dlib.rectangle(int(x1), int(y1), int(x2), int(y2))
            shape = self._predictor(frame_rgb, rect)
            out.append([(p.x, p.y) for p in shape.parts()])
        return np.asarray(out, dtype=np.float32).reshape(-1, 68, 2)

    def detect(self, frames_rgb: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for frame in frames_rgb:
            frame = np.ascontiguousarray(frame)  # dlib misreads strided views such as frame[..., ::-1]
            scale = self._scale(frame)
            small = self._resize([frame], scale)[0]
            upsample = self.upsample if self.upsample is not None else int(max(small.shape[:2]) < 640)
            rects, scores, _ = self._det.run(small, upsample, self.threshold)
            faces = []
            for rect, score in zip(rects, scores):
                shape = self._predictor(small, rect)
                pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32) / scale
                faces.append(list(_box_from_landmarks(pts)) + [float(score)])
            out.append(np.asarray(faces, dtype=np.float32).reshape(-1, 5))
        return out


def _box_from_landmarks(pts: np.ndarray) -> tuple[float, float, float, float]:
    brow_top = pts[17:27, 1].min()
    chin = pts[:17, 1].max()
    top = brow_top - 0.25 * (chin - brow_top)
    return float(pts[:17, 0].min()), float(top), float(pts[:17, 0].max()), float(chin)


class FixedBoxDetector(FaceDetector):
    """The same box on every frame. ``box`` is upstream's order: top, bottom, left, right."""

    name = "box"

    def __init__(self, box: Sequence[int]) -> None:
        super().__init__(None)
        top, bottom, left, right = (int(v) for v in box)
        if bottom <= top or right <= left:
            raise Wav2LipUHQError(f"--box {top} {bottom} {left} {right}: bottom/right must exceed top/left")
        self.box = (top, bottom, left, right)

    def settings(self) -> dict:
        return {"detector": self.name, "box": self.box}

    def detect(self, frames_rgb: Sequence[np.ndarray]) -> list[np.ndarray]:
        top, bottom, left, right = self.box
        return [np.array([[left, top, right, bottom, 1.0]], dtype=np.float32) for _ in frames_rgb]


def create_detector(name: str = "s3fd", device: str = "cpu", **options) -> FaceDetector:
    """Build a detector by name: ``s3fd`` (options: model_path, batch_size, threshold, max_size),
    ``dlib`` (upsample, max_size) or ``box`` (box=(top, bottom, left, right))."""
    if name == "s3fd":
        return S3FDDetector(device=device, **options)
    if name == "dlib":
        return DlibDetector(**options)
    if name == "box":
        return FixedBoxDetector(**options)
    raise Wav2LipUHQError(
        f"unknown face detector {name!r} (choose from {', '.join(DETECTORS)} or a fixed box)"
    )
