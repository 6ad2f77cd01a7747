"""From per-frame detections to one smooth face box per frame.

Selection follows one person through the video (IoU tracking), so ``face_index`` keeps
meaning the same face. Frames without a face get NaN and pass through the pipeline unchanged.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SMOOTHING = ("centered", "upstream", "none")


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-6)


def _pick(dets: np.ndarray, face_index: int | None) -> int | None:
    if face_index is None:
        areas = (dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1])
        return int(np.argmax(areas))
    if face_index >= len(dets):
        return None
    order = np.argsort((dets[:, 0] + dets[:, 2]) / 2, kind="stable")  # left to right
    return int(order[face_index])


def select_track(detections: Sequence[np.ndarray], face_index: int | None = None) -> np.ndarray:
    """(F, 4) float boxes x1, y1, x2, y2 of the chosen face; NaN rows where it is absent.

    ``face_index`` None picks the largest face; an integer picks that face counted from the
    left where it first appears. Once picked, the face is followed by overlap (IoU).
    """
    track = np.full((len(detections), 4), np.nan, dtype=np.float32)
    prev: np.ndarray | None = None
    for i, dets in enumerate(detections):
        dets = np.asarray(dets, dtype=np.float32).reshape(-1, 5)
        if len(dets) == 0:
            continue
        choice = None
        if prev is not None:
            ious = _iou(prev, dets)
            if ious.max() > 0.2:
                choice = int(np.argmax(ious))
        if choice is None:
            choice = _pick(dets, face_index)
        if choice is None:
            continue
        track[i] = dets[choice, :4]
        prev = track[i]
    return track


def pad_boxes(track: np.ndarray, pads: Sequence[int], width: int, height: int) -> np.ndarray:
    """Upstream's pads (top, bottom, left, right) after clipping the box to the frame, integer boxes."""
    top, bottom, left, right = pads
    out = track.copy()
    ok = ~np.isnan(out[:, 0])
    b = np.maximum(out[ok], 0).astype(np.int64).astype(np.float32)  # upstream: max(0, .) then int()
    out[ok, 0] = np.maximum(0, b[:, 0] - left)
    out[ok, 1] = np.maximum(0, b[:, 1] - top)
    out[ok, 2] = np.minimum(width, b[:, 2] + right)
    out[ok, 3] = np.minimum(height, b[:, 3] + bottom)
    return out


def valid_runs(valid: np.ndarray):
    """Runs of consecutive valid frames as (start, stop)."""
    i, n = 0, len(valid)
    while i < n:
        if not valid[i]:
            i += 1
            continue
        j = i
        while j < n and valid[j]:
            j += 1
        yield i, j
        i = j


def smooth_track(track: np.ndarray, method: str = "centered", window: int = 5) -> np.ndarray:
    """Temporal smoothing within each run of frames that have a face.

    - ``upstream``: Wav2Lip's forward mean over ``window`` frames (int-truncated); it lags
      behind motion by about two frames.
    - ``centered``: a symmetric triangular window: zero lag on steady motion, less jitter.
    - ``none``: raw boxes.
    Returns integer-valued float boxes with NaN where there is no face.
    """
    if method not in SMOOTHING:
        raise ValueError(f"unknown smoothing {method!r} (choose from {', '.join(SMOOTHING)})")
    out = track.copy()
    valid = ~np.isnan(track[:, 0])
    for start, stop in valid_runs(valid):
        seg = track[start:stop].astype(np.float64)
        n = len(seg)
        if method == "upstream":
            res = seg.astype(np.int64)
            for i in range(n):
                lo = i if i + window <= n else max(0, n - window)
                res[i] = np.mean(res[lo : lo + window], axis=0)  # in place and truncated, as upstream
            out[start:stop] = res
        elif method == "centered":
            half = window // 2
            weights = np.array([half + 1 - abs(k) for k in range(-half, half + 1)], dtype=np.float64)
            res = np.empty_like(seg)
            for i in range(n):
                lo, hi = max(0, i - half), min(n, i + half + 1)
                # symmetric window: shrink to the nearer edge so the filter stays centred
                r = min(i - lo, hi - 1 - i)
                w = weights[half - r : half + r + 1]
                res[i] = (seg[i - r : i + r + 1] * w[:, None]).sum(0) / w.sum()
            out[start:stop] = np.round(res)
        else:
            out[start:stop] = np.round(seg)
    return out
