"""Face detection, selection, padding and temporal smoothing."""

from .detection import (
    DETECTORS,
    DlibDetector,
    FaceDetector,
    FixedBoxDetector,
    S3FDDetector,
    create_detector,
    dlib_model_path,
)
from .track import SMOOTHING, pad_boxes, select_track, smooth_track

__all__ = [
    "DETECTORS",
    "SMOOTHING",
    "DlibDetector",
    "FaceDetector",
    "FixedBoxDetector",
    "S3FDDetector",
    "create_detector",
    "dlib_model_path",
    "pad_boxes",
    "select_track",
    "smooth_track",
]
