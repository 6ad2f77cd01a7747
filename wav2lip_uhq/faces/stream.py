"""Streaming face track: detections (and landmarks) in, final per-frame geometry out.

Selection is causal (it follows the chosen face by overlap); smoothing is centred, so a
frame's box and landmarks are final once a few later frames are known (``lookahead``).
Memory stays bounded: only small per-frame arrays are kept, never frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from .landmarks import LandmarkDetector, smooth_landmarks
from .track import pad_boxes, select_track, smooth_track

LANDMARK_WINDOW = 7


@dataclass
class FaceGeometry:
    """The face in one frame: the generator's box (x1, y1, x2, y2) and smoothed landmarks."""

    box: np.ndarray  # float (4,), NaN when there is no face
    landmarks: np.ndarray | None  # (68, 2) in frame pixels, or None

    @property
    def valid(self) -> bool:
        b = self.box
        return not np.isnan(b[0]) and b[2] - b[0] >= 2 and b[3] - b[1] >= 2


class FaceTrackStream:
    def __init__(
        self,
        width: int,
        height: int,
        pads: Sequence[int] = (0, 10, 0, 0),
        smoothing: str = "centered",
        face_index: int | None = None,
        fixed: bool = False,
        landmarks: LandmarkDetector | None = None,
        landmark_smoothing: str = "savgol",
    ) -> None:
        self.width, self.height = width, height
        self.pads, self.smoothing, self.face_index, self.fixed = pads, smoothing, face_index, fixed
        self.landmark_detector = landmarks
        self.landmark_smoothing = landmark_smoothing
        box_lookahead = 0 if fixed else {"upstream": 4, "centered": 2, "none": 0}[smoothing]
        lm_lookahead = LANDMARK_WINDOW // 2 if landmarks is not None and landmark_smoothing != "none" else 0
        self.lookahead = max(box_lookahead, lm_lookahead)
        self._box_lookahead = box_lookahead
        self.raw: list[np.ndarray] = []  # detections per frame (K, 5): what the cache stores
        self.selected = np.zeros((0, 4), np.float32)  # chosen face before padding
        self.padded = np.zeros((0, 4), np.float32)
        self.raw_landmarks = np.zeros((0, 68, 2), np.float32)
        self.final: list[FaceGeometry] = []

    def add(
        self,
        detections: list[np.ndarray],
        frames_bgr: Sequence[np.ndarray] | None = None,
        landmarks: np.ndarray | None = None,
    ) -> None:
        """Append a batch of frames' detections; landmarks are computed from ``frames_bgr``
        unless given (from the cache)."""
        start = len(self.raw)
        self.raw.extend(detections)
        if self.fixed:
            boxes = np.stack([d[0, :4] for d in detections]).astype(np.float32)
            boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, self.width)
            boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, self.height)
            selected, padded = boxes, boxes
        else:
            seed = [] if start == 0 else [self._seed()]
            selected = select_track(seed + list(detections), self.face_index)[len(seed) :]
            padded = pad_boxes(selected, self.pads, self.width, self.height)
        self.selected = np.concatenate([self.selected, selected])
        self.padded = np.concatenate([self.padded, padded])
        if self.landmark_detector is not None:
            if landmarks is None:
                landmarks = self.landmark_detector.landmarks(frames_bgr, selected)
            self.raw_landmarks = np.concatenate([self.raw_landmarks, landmarks.astype(np.float32)])

    def _seed(self) -> np.ndarray:
        last = self.selected[-1]
        if np.isnan(last[0]):
            return np.zeros((0, 5), np.float32)
        return np.array([[*last, 1.0]], np.float32)

    def ready(self, end: bool = False) -> Iterator[tuple[int, FaceGeometry]]:
        """(frame index, geometry) for every frame that became final."""
        n = len(self.padded)
        limit = n if end else n - self.lookahead
        while len(self.final) < limit:
            j = len(self.final)
            if self.fixed:
                box = self.padded[j]
            elif self._box_lookahead == 0:
                box = smooth_track(self.padded[j : j + 1], "none")[0]
            else:
                lo, hi = max(0, j - 2 * self._box_lookahead), min(n, j + self._box_lookahead + 1)
                box = smooth_track(self.padded[lo:hi], self.smoothing)[j - lo]
            points = None
            if self.landmark_detector is not None and not np.isnan(self.raw_landmarks[j, 0, 0]):
                half = LANDMARK_WINDOW // 2
                lo, hi = max(0, j - half), min(n, j + half + 1)
                points = smooth_landmarks(
                    self.raw_landmarks[lo:hi], self.landmark_smoothing, LANDMARK_WINDOW
                )[j - lo]
            geo = FaceGeometry(box, points)
            self.final.append(geo)
            yield j, geo

    def geometry(self, j: int) -> FaceGeometry:
        return self.final[j]
