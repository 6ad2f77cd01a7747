"""Control images for the ControlNets, computed on the Wav2Lip output crop.

- ``canny``: edges of the lips and teeth (``cv2.Canny``, which is all controlnet-aux's
  CannyDetector does), the default: it pins the lip outline, hence the mouth opening.
- ``lineart``: controlnet-aux's LineartDetector; its weights (``sk_model.pth``) are read from
  ``annotators_dir`` only, never downloaded.
- ``tile``: the crop itself, lightly blurred: the tile ControlNet keeps colours and layout and
  adds detail (detail-preserving upscaling of the 96 px Wav2Lip mouth).
- ``mediapipe_face``: controlnet-aux's MediaPipe face mesh drawing (needs ``mediapipe`` 0.10.x).
- ``none``: the crop as is (e.g. an inpaint ControlNet, or a model with its own preprocessing).

Imports are lazy: nothing here loads controlnet-aux until a preprocessor is built.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError

PREPROCESSORS = ("canny", "lineart", "tile", "mediapipe_face", "none")
Preprocessor = Callable[[np.ndarray], np.ndarray]  # RGB uint8 (S, S, 3) -> RGB uint8 (S, S, 3)


def _rgb(image: np.ndarray, size: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def canny(low: int = 80, high: int = 160) -> Preprocessor:
    # controlnet-aux's CannyDetector is exactly cv2.Canny + 3 channels; calling OpenCV directly
    # avoids importing controlnet-aux, whose package import loads every annotator (seconds).
    return lambda img: _rgb(cv2.Canny(img, low, high), img.shape[0])


def tile(blur: float = 1.0) -> Preprocessor:
    return lambda img: _rgb(cv2.GaussianBlur(img, (0, 0), blur) if blur > 0 else img, img.shape[0])


CONTROLNET_AUX = ("the {name} preprocessor needs controlnet-aux, which the refine extra leaves out (it would add "
                  "a second OpenCV, opencv-python-headless): pip install einops timm torchvision scikit-image "
                  "huggingface_hub && pip install --no-deps 'controlnet-aux>=0.0.9'")


def _need_controlnet_aux(name: str) -> None:
    if importlib.util.find_spec("controlnet_aux") is None:
        raise InputError(CONTROLNET_AUX.format(name=name))


def lineart(annotators_dir: Path | None) -> Preprocessor:
    _need_controlnet_aux("lineart")
    if annotators_dir is None or not (Path(annotators_dir) / "sk_model.pth").is_file():
        raise InputError("the lineart preprocessor needs its weights: put controlnet-aux's sk_model.pth "
                         "(and sk_model2.pth) in a folder and pass it as annotators_dir")
    from controlnet_aux.lineart import LineartDetector

    det = LineartDetector.from_pretrained(str(annotators_dir))
    return lambda img: _rgb(det(img, detect_resolution=img.shape[0], image_resolution=img.shape[0],
                                output_type="np"), img.shape[0])


def mediapipe_face() -> Preprocessor:
    if importlib.util.find_spec("mediapipe") is None:
        raise InputError("the mediapipe_face preprocessor needs mediapipe 0.10.x (pip install 'mediapipe<0.11')")
    _need_controlnet_aux("mediapipe_face")
    from controlnet_aux.mediapipe_face import MediapipeFaceDetector

    det = MediapipeFaceDetector()
    return lambda img: _rgb(det(img, detect_resolution=img.shape[0], image_resolution=img.shape[0],
                                output_type="np"), img.shape[0])


def make_preprocessor(name: str, annotators_dir: Path | None = None) -> Preprocessor:
    if name == "canny":
        return canny()
    if name == "tile":
        return tile()
    if name == "lineart":
        return lineart(annotators_dir)
    if name == "mediapipe_face":
        return mediapipe_face()
    if name == "none":
        return lambda img: _rgb(img, img.shape[0])
    raise ValueError(f"unknown ControlNet preprocessor {name!r} (choose from {', '.join(PREPROCESSORS)})")


class ControlImages:
    """The preprocessors of a set of ControlNets, built once and reused for every frame."""

    def __init__(self, names: list[str], annotators_dir: Path | None = None) -> None:
        self._pre = [make_preprocessor(n, annotators_dir) for n in names]

    def __call__(self, crops: list[np.ndarray]) -> list[list[np.ndarray]]:
        """[controlnet][crop] control images for RGB crops."""
        return [[pre(c) for c in crops] for pre in self._pre]
