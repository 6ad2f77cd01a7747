"""Masks, colour matching, blending, landmark smoothing and the silence gate (issue: compositing)."""

from __future__ import annotations

import numpy as np
import pytest
from media_helpers import moving_face_frames

from wav2lip_uhq.compositing import (
    BlendOptions,
    MaskBlend,
    Placement,
    extract_crop,
    laplacian_blend,
    match_colour,
    paste_into,
)
from wav2lip_uhq.config import CompositeOptions, FaceOptions, RunConfig
from wav2lip_uhq.faces import create_detector
from wav2lip_uhq.faces.landmarks import create_landmark_detector, smooth_landmarks
from wav2lip_uhq.masks import MaskOptions, landmark_mask
from wav2lip_uhq.pipeline import LipSyncPipeline, silent_frames
from wav2lip_uhq.video import EncodeSettings, iter_frames


@pytest.fixture(scope="module")
def astronaut():
    import skimage.data

    rgb = skimage.data.astronaut()
    box = create_detector("dlib").detect([rgb])[0][0, :4]
    points = create_landmark_detector("dlib").landmarks([rgb[:, :, ::-1].copy()], box[None])[0]
    return rgb[:, :, ::-1].copy(), box, points


@pytest.mark.parametrize("region", ["lower_face", "mouth"])
def test_mask_covers_lips_and_chin_not_eyes_with_a_soft_edge(astronaut, region):
    _, _, pts = astronaut
    mask = landmark_mask(pts, (512, 512), MaskOptions(region=region))
    lips = pts[48:60].astype(int)
    assert (mask[lips[:, 1], lips[:, 0]] > 0.5).mean() > 0.8, "the lips are not inside the mask"
    chin = pts[8].astype(int)
    assert mask[chin[1] - 6, chin[0]] > 0.2, "the chin is not covered"
    for eye in (pts[36:42], pts[42:48]):
        ex, ey = eye.mean(0).astype(int)
        assert mask[ey - 10 : ey + 10, ex - 10 : ex + 10].max() == 0, "the mask reaches the eyes"
    step = max(np.abs(np.diff(mask, axis=0)).max(), np.abs(np.diff(mask, axis=1)).max())
    assert step < 0.2, f"hard mask edge (step {step:.2f})"


def test_dilate_and_erode_change_the_area(astronaut):
    _, _, pts = astronaut
    base = (landmark_mask(pts, (512, 512)) > 0).sum()
    grown = (landmark_mask(pts, (512, 512), MaskOptions(dilate=0.1)) > 0).sum()
    shrunk = (landmark_mask(pts, (512, 512), MaskOptions(dilate=-0.1)) > 0).sum()
    assert shrunk < base < grown


@pytest.mark.parametrize("blend", ["alpha", "laplacian", "poisson"])
def test_pixels_outside_the_mask_never_change(astronaut, blend):
    frame, box, pts = astronaut
    placement = Placement.from_box((int(box[0]), int(box[1]), int(box[2]), int(box[3]) + 10), 96, pts)
    generated = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    out = frame.copy()
    done = paste_into(out, MaskBlend(BlendOptions(blend=blend)), generated, placement)
    x1, y1, x2, y2 = done.roi
    full = np.zeros(frame.shape[:2], np.float32)
    full[y1:y2, x1:x2] = done.alpha
    changed = np.any(out != frame, axis=2)
    assert changed.any()
    assert not changed[full == 0].any(), "a pixel outside the mask changed"


def test_colour_match_reduces_the_colour_difference(astronaut):
    frame, box, pts = astronaut
    x1, y1, x2, y2 = (int(v) for v in box)
    region = frame[y1:y2, x1:x2]
    tinted = np.clip(region.astype(int) + [25, -10, -20], 0, 255).astype(np.uint8)  # a blue cast
    weight = np.ones(region.shape[:2], np.float32)
    fixed = match_colour(tinted, region, weight)
    before = np.abs(tinted.astype(float).mean((0, 1)) - region.mean((0, 1))).sum()
    after = np.abs(fixed.astype(float).mean((0, 1)) - region.mean((0, 1))).sum()
    assert after < 0.25 * before


def test_laplacian_blend_is_exact_where_alpha_is_zero_or_one():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 255, (64, 64, 3)).astype(np.uint8), rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)
    ones = laplacian_blend(a, b, np.ones((64, 64), np.float32))
    np.testing.assert_allclose(ones, b, atol=1e-3)


def test_aligned_crop_round_trip_of_a_tilted_head(astronaut):
    """A head tilted by 20 degrees is cropped upright and pasted back in place."""
    import cv2

    frame, box, pts = astronaut
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rot = cv2.getRotationMatrix2D((float(cx), float(cy)), 20, 1.0)
    tilted = cv2.warpAffine(frame, rot, (512, 512), borderMode=cv2.BORDER_REFLECT)
    tilted_pts = np.hstack([pts, np.ones((68, 1))]) @ rot.T
    from wav2lip_uhq.compositing import eye_angle

    angle = eye_angle(tilted_pts)
    assert abs(np.degrees(angle) + 20) < 3
    placement = Placement.from_box(box.astype(int), 96, tilted_pts, angle=angle)
    crop = extract_crop(tilted, placement)
    upright = extract_crop(frame, Placement.from_box(box.astype(int), 96))
    assert np.abs(crop.astype(int) - upright.astype(int)).mean() < 12  # same face, same orientation
    # pasting the crop back changes the frame only a little (resampling), and only in the mask
    out = tilted.copy()
    paste_into(out, MaskBlend(BlendOptions(colour_match=False)), crop, placement)
    diff = np.abs(out.astype(int) - tilted.astype(int))
    assert diff.max() > 0 and diff.mean() < 1.0


def test_landmark_smoothing_removes_jitter_without_lag():
    rng = np.random.default_rng(0)
    t = np.arange(80, dtype=np.float64)
    base = np.stack([np.linspace(0, 100, 68), np.linspace(0, 50, 68)], 1)
    truth = base[None] + np.stack([10 * t, 3 * t + 0.05 * t**2], 1)[:, None, :]  # fast, accelerating motion
    noisy = truth + rng.normal(0, 1.5, truth.shape)
    smoothed = smooth_landmarks(noisy.astype(np.float32))
    err_noisy = np.abs(noisy - truth)[5:-5].mean()
    err_smooth = np.abs(smoothed - truth)[5:-5].mean()
    assert err_smooth < 0.6 * err_noisy  # jitter removed
    bias = (smoothed - truth)[5:-5, :, 0].mean()
    assert abs(bias) < 0.2  # no lag behind the 10 px/frame motion


def test_landmarks_on_a_moving_face_are_stable_and_track_it():
    frames, offsets = moving_face_frames(n=24)
    det, lm = create_detector("dlib"), create_landmark_detector("dlib")
    rgb = [f[:, :, ::-1].copy() for f in frames]
    boxes = np.stack([d[0, :4] for d in det.detect(rgb)])
    raw = lm.landmarks(frames, boxes)
    smooth = smooth_landmarks(raw)
    moved = np.array([ox for _, ox in offsets], float)
    # relative to the true head position the landmarks should stay still
    rel_raw = raw[:, :, 0] - moved[:, None]
    rel_smooth = smooth[:, :, 0] - moved[:, None]
    jitter_raw = np.abs(np.diff(rel_raw, axis=0)).mean()
    jitter_smooth = np.abs(np.diff(rel_smooth, axis=0)).mean()
    assert jitter_smooth <= jitter_raw
    assert jitter_smooth < 1.0, f"landmark jitter {jitter_smooth:.2f} px/frame after smoothing"


def test_silence_detection():
    sr, fps = 16000, 25
    rng = np.random.default_rng(0)
    speech = rng.normal(0, 0.2, sr)  # 1 s loud
    wav = np.concatenate([speech, np.zeros(sr) + rng.normal(0, 1e-4, sr), speech]).astype(np.float32)
    silent = silent_frames(wav, 75, fps)
    assert not silent[:24].any() and silent[27:48].all() and not silent[52:].any()


def test_silence_gate_closes_the_mouth(reference, astronaut_png, w2l_checkpoint, tmp_path):
    import soundfile as sf

    wav, sr = sf.read(reference / "speech_16k.wav", dtype="float32")
    gap = np.concatenate([wav[: sr], np.zeros(sr, np.float32), wav[sr : 2 * sr]])
    audio = tmp_path / "gap.wav"
    sf.write(audio, gap, sr)
    pipe = LipSyncPipeline("cpu")
    common = dict(face=astronaut_png, audio=audio, checkpoint=w2l_checkpoint, faces=FaceOptions(detector="dlib"),
                  encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "c")
    closed = pipe.run(RunConfig(out=tmp_path / "closed.mkv", composite=CompositeOptions(silence="close"), **common))
    kept = pipe.run(RunConfig(out=tmp_path / "kept.mkv", composite=CompositeOptions(silence="keep"), **common))
    assert closed.silent_frames >= 20
    src = next(iter_frames(astronaut_png))
    c = np.stack(list(iter_frames(closed.output)))
    k = np.stack(list(iter_frames(kept.output)))
    quiet = range(30, 45)  # inside the silent second (frames 25..50)
    # keep: the original frame; close: one still, closed mouth (same silent input every frame)
    for i in quiet:
        np.testing.assert_array_equal(k[i], src)
        np.testing.assert_array_equal(c[i], c[quiet[0]])
    assert not np.array_equal(c[quiet[0]], src)
    assert any(not np.array_equal(c[i], c[i + 1]) for i in range(20))  # it talks outside the gap


def test_debug_video_and_preview(astronaut_png, speech_short, w2l_checkpoint, tmp_path):
    pipe = LipSyncPipeline("cpu")
    config = RunConfig(face=astronaut_png, audio=speech_short, checkpoint=w2l_checkpoint, out=tmp_path / "o.mkv",
                       faces=FaceOptions(detector="dlib"), encode=EncodeSettings(lossless=True),
                       composite=CompositeOptions(debug_video=tmp_path / "debug.mkv"), cache_dir=tmp_path / "c")
    result = pipe.run(config)
    debug = np.stack(list(iter_frames(tmp_path / "debug.mkv")))
    out = np.stack(list(iter_frames(result.output)))
    assert debug.shape[0] == out.shape[0] and debug.shape[2] == 2 * out.shape[2]
    np.testing.assert_array_equal(debug[:, :, :512], out)
    overlay = debug[0, :, 512:].astype(int)
    src = next(iter_frames(astronaut_png)).astype(int)
    assert (overlay[..., 2] - src[..., 2] > 40).sum() > 500  # the red mask tint
    preview, overlay1 = pipe.preview(config, frame_index=5)
    np.testing.assert_array_equal(preview, out[5])
    assert overlay1.shape == src.shape
