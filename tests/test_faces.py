"""Face selection, padding and smoothing; the offline detector on the real photo."""

from __future__ import annotations

import numpy as np
import pytest

from wav2lip_uhq.faces import create_detector, pad_boxes, select_track, smooth_track


def _upstream_smoothing(boxes: np.ndarray, T: int = 5) -> np.ndarray:
    """Reference: upstream's get_smoothened_boxes on an int array (written from its description)."""
    boxes = boxes.astype(np.int64).copy()
    for i in range(len(boxes)):
        window = boxes[len(boxes) - T :] if i + T > len(boxes) else boxes[i : i + T]
        boxes[i] = np.mean(window, axis=0)
    return boxes


def test_upstream_smoothing_is_reproduced():
    rng = np.random.default_rng(1)
    raw = np.cumsum(rng.integers(-6, 7, size=(40, 4)), axis=0) + 200
    ours = smooth_track(raw.astype(np.float32), "upstream")
    np.testing.assert_array_equal(ours, _upstream_smoothing(raw))


def test_centered_smoothing_has_no_lag_on_fast_motion():
    t = np.arange(60, dtype=np.float32)
    x = 10 + 12 * t  # 12 px per frame: fast head motion
    track = np.stack([x, x * 0 + 50, x + 100, x * 0 + 150], axis=1)
    centered = smooth_track(track, "centered")
    upstream = smooth_track(track, "upstream")
    assert np.abs(centered[:, 0] - x).max() <= 0.5
    assert np.abs(upstream[5:-5, 0] - x[5:-5]).mean() >= 20  # upstream runs 2 frames ahead


def test_centered_smoothing_reduces_jitter():
    rng = np.random.default_rng(0)
    true = np.linspace(100, 200, 80)
    noisy = true + rng.normal(0, 4, size=80)
    track = np.stack([noisy, noisy, noisy + 50, noisy + 50], 1).astype(np.float32)
    err_raw = np.abs(noisy - true)[2:-2].mean()
    err_smooth = np.abs(smooth_track(track, "centered")[:, 0] - true)[2:-2].mean()
    assert err_smooth < 0.75 * err_raw


def test_smoothing_does_not_cross_faceless_frames():
    track = np.array([[0, 0, 10, 10]] * 3 + [[np.nan] * 4] + [[100, 100, 120, 120]] * 3, np.float32)
    out = smooth_track(track, "centered")
    assert np.isnan(out[3]).all()
    np.testing.assert_array_equal(out[:3], track[:3])
    np.testing.assert_array_equal(out[4:], track[4:])


def test_largest_face_or_index_is_followed():
    a = [10, 10, 50, 50, 0.9]  # small, left
    b = [100, 10, 200, 110, 0.9]  # large, right
    dets = [np.array([a, b], np.float32) for _ in range(3)]
    np.testing.assert_array_equal(select_track(dets)[:, 0], [100, 100, 100])
    np.testing.assert_array_equal(select_track(dets, face_index=0)[:, 0], [10, 10, 10])
    # the left face moves right past the other one's centre: still followed by overlap
    moving = [np.array([[10 + 5 * i, 10, 50 + 5 * i, 50, 0.9], b], np.float32) for i in range(10)]
    assert np.all(np.diff(select_track(moving, face_index=0)[:, 0]) == 5)


def test_pads_are_clipped_to_the_frame():
    out = pad_boxes(np.array([[5.7, 3.2, 90.0, 95.0]], np.float32), (0, 10, 10, 10), width=100, height=100)
    np.testing.assert_array_equal(out[0], [0, 3, 100, 100])


def test_dlib_detector_finds_the_astronaut():
    import skimage.data

    det = create_detector("dlib")
    faces = det.detect([skimage.data.astronaut()])[0]
    assert len(faces) == 1
    x1, y1, x2, y2, _ = faces[0]
    # the face spans roughly x 175-275, y 60-180 in the 512x512 photo
    assert 160 < x1 < 195 and 255 < x2 < 290 and 30 < y1 < 100 and 160 < y2 < 200


def test_s3fd_backend_runs_with_local_weights(tmp_path):
    torch = pytest.importorskip("torch")
    from face_alignment.detection.sfd.net_s3fd import s3fd

    path = tmp_path / "s3fd.pth"
    torch.save(s3fd().state_dict(), path)
    det = create_detector("s3fd", model_path=path, batch_size=2, max_size=128)
    frames = [np.zeros((256, 256, 3), np.uint8)] * 3
    out = det.detect(frames)
    assert len(out) == 3 and all(o.shape[1] == 5 for o in out)


def test_fan_landmark_backend_with_local_weights(tmp_path):
    """The FAN backend loads a plain state dict (the released .pth.tar layout) and maps heatmap
    peaks back into frame coordinates inside the face box."""
    torch = pytest.importorskip("torch")
    from face_alignment.models.fan import FAN

    from wav2lip_uhq.faces.landmarks import create_landmark_detector

    torch.manual_seed(0)
    path = tmp_path / "2DFAN4-11f355bf06.pth.tar"
    torch.save(FAN(1).state_dict(), path)
    det = create_landmark_detector("fan", model_path=path)
    frames = [np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)] * 2
    boxes = np.array([[100, 60, 200, 180], [np.nan] * 4], np.float32)
    pts = det.landmarks(frames, boxes)
    assert pts.shape == (2, 68, 2) and np.isnan(pts[1]).all()
    # every point lies in FAN's crop: 200 * (w + h) / 195 px around the box centre, raised by 0.12 h
    half = 200 * (100 + 120) / 195 / 2 + 1
    cx, cy = 150, 120 - 0.12 * 120
    assert np.all(np.abs(pts[0, :, 0] - cx) <= half) and np.all(np.abs(pts[0, :, 1] - cy) <= half)
    assert np.ptp(pts[0, :, 0]) > 20  # not collapsed onto one point
    with pytest.raises(Exception, match="not found|FAN"):
        create_landmark_detector("fan", model_path=tmp_path / "missing.pth.tar")


def test_fan_heatmap_decoding_finds_planted_peaks():
    from wav2lip_uhq.faces.landmarks import fan_crop_matrix, heatmap_peaks

    heat = np.zeros((68, 64, 64), np.float32)
    for k in range(68):
        x, y = 5 + (k * 7) % 54, 6 + (k * 3) % 50
        heat[k, y, x] = 1.0
        heat[k, y, x + 1] = 0.5  # the right neighbour is higher: a quarter pixel to the right
    pts = heatmap_peaks(heat)
    k = 10
    assert np.allclose(pts[k], [5 + (k * 7) % 54 + 0.75, 6 + (k * 3) % 50 + 0.5])
    m = fan_crop_matrix((100, 60, 200, 180))
    centre = m @ np.array([150, 120 - 0.12 * 120, 1.0])
    assert np.allclose(centre, [128, 128])
