"""`python -m train eval` end to end on generated videos: LSE-D/LSE-C, PSNR/SSIM, FID."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from train.__main__ import main

SECONDS = 0.48  # 12 frames: 7 LSE windows


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from skimage.data import astronaut

    from train.media import write_video
    from train.synthetic import ClipSpec, render_clip

    root = tmp_path_factory.mktemp("evalvids")
    frames, wav = render_clip(ClipSpec(0, 0, SECONDS), astronaut(), seed=0)
    rng = np.random.default_rng(0)
    noisy = [np.clip(f.astype(np.int16) + rng.integers(-40, 41, f.shape), 0, 255).astype(np.uint8) for f in frames]
    write_video(root / "gt.mp4", frames, 25.0, wav)
    write_video(root / "noisy.mp4", noisy, 25.0, wav)
    return root


@pytest.fixture(scope="module")
def lse_model(tmp_path_factory):
    from train.lse import SyncNetLSE
    from wav2lip_uhq.models.fill import fill_rule_state_dict

    path = tmp_path_factory.mktemp("lse") / "syncnet_v2.model"
    torch.save(fill_rule_state_dict(SyncNetLSE()), path)  # syncnet_python's layout, rule-filled weights
    return path


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fid") / "inception_v3_random.pth"
    torch.save(inception_v3(weights=None, aux_logits=False, init_weights=True).state_dict(), path)
    return path


def test_eval_cli_lse_psnr_ssim_fid(videos, lse_model, inception, tmp_path):
    gt, noisy = videos / "gt.mp4", videos / "noisy.mp4"
    (tmp_path / "same.txt").write_text(f"{gt} {gt}\n")
    out = tmp_path / "same.json"
    assert main(["eval", "--lse-model", str(lse_model), "--test-list", str(tmp_path / "same.txt"), "--vshift", "3",
                 "--device", "cpu", "--fid-weights", str(inception), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    s = res["summary"]
    v = res["videos"][str(gt)]
    assert np.isfinite(s["LSE-D"]) and s["LSE-D"] > 0 and s["LSE-C"] >= 0 and -3 <= v["offset"] <= 3
    # identical clips: no PSNR (not averaged in as 100 dB), counted instead
    assert s["PSNR"] is None and s["identical_pairs"] == 1 and s["SSIM"] == pytest.approx(1.0)
    assert res["pairs"][str(gt)]["mouth_psnr"] is None and s["mouth_SSIM"] == pytest.approx(1.0)
    # FID(a, a) = 0 up to rounding: the random Inception's features are huge (covariance trace ~1e13), and
    # two CPU forwards of the same frames differ in the last float32 bits, so "rounding" is relative to that
    from train.fid import inception_features, load_inception
    from train.media import iter_video_frames

    feats = inception_features(load_inception(inception), iter_video_frames(gt))
    assert abs(s["FID"]) <= 1e-6 * float(np.var(feats, axis=0, ddof=1).sum()) + 1e-6

    (tmp_path / "noisy.txt").write_text(f"{noisy} {gt}\n")
    out = tmp_path / "noisy.json"
    assert main(["eval", "--test-list", str(tmp_path / "noisy.txt"), "--device", "cpu", "--out", str(out)]) == 0
    s = json.loads(out.read_text())["summary"]
    assert 10 < s["PSNR"] < 35 and 0 < s["SSIM"] < 0.9 and s["identical_pairs"] == 0
    assert 10 < s["mouth_PSNR"] < 35
    assert "FID" not in s and "LSE-D" not in s


def test_mouth_region_sees_a_change_the_whole_frame_hides(videos, tmp_path):
    """Only the mouth differs (as after lip-sync): the mouth figures drop far below the whole-frame ones."""
    from train.evaluate import pair_scores
    from train.media import iter_video_frames

    gt = list(iter_video_frames(videos / "gt.mp4"))
    gen = [f.copy() for f in gt]
    for f in gen:  # redraw the lips region (rows 105..125 of the 160 px synthetic face)
        f[105:125, 60:100] = 255 - f[105:125, 60:100]
    box = (30, 28, 132, 140)  # x1, y1, x2, y2 of the synthetic face: its lower half holds the mouth
    r = pair_scores(gen, gt, [box] * len(gt))
    assert r["mouth_psnr"] < r["psnr"] - 5, r
    assert r["mouth_ssim"] < r["ssim"] - 0.05, r
    whole = pair_scores(gen, gt)  # face-crop clips: the mouth region is the lower half of the frame
    assert whole["mouth_psnr"] < whole["psnr"] - 2, whole


def test_eval_needs_a_sync_model_for_videos(videos, capsys):
    capsys.readouterr()
    assert main(["eval", "--videos", str(videos / "gt.mp4"), "--device", "cpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--lse-model" in line and "--syncnet" in line
    assert main(["eval", "--device", "cpu"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_expert_sync_score_prefers_matching_audio(trained_syncnet, tmp_path):
    """Without syncnet_python's model, our expert scores videos: an in-sync clip gets a lower sync loss
    than the same frames with another clip's audio, and an offset near 0."""
    from skimage.data import astronaut

    from train.media import write_video
    from train.synthetic import ClipSpec, render_clip

    frames, wav = render_clip(ClipSpec(1, 20, 2.0), astronaut(), seed=0)
    _, other = render_clip(ClipSpec(1, 21, 2.0), astronaut(), seed=0)
    write_video(tmp_path / "sync.mp4", frames, 25.0, wav)
    write_video(tmp_path / "other.mp4", frames, 25.0, other)
    out = tmp_path / "r.json"
    assert main(["eval", "--syncnet", str(trained_syncnet["dir"] / "best.pth"), "--videos", str(tmp_path / "sync.mp4"),
                 str(tmp_path / "other.mp4"), "--vshift", "6", "--face-box", "30", "140", "28", "132",
                 "--device", "cpu", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["videos"]
    good, bad = res[str(tmp_path / "sync.mp4")], res[str(tmp_path / "other.mp4")]
    assert abs(good["expert_offset"]) <= 1 and good["expert_confidence"] > bad["expert_confidence"]
    assert good["expert_sync_loss"] < bad["expert_sync_loss"] - 0.1, (good, bad)


def test_fid_separates_frame_sets_and_needs_weights(videos, inception, capsys):
    from train.fid import frechet_distance, inception_features, load_inception
    from train.media import iter_video_frames

    model = load_inception(inception)
    a = inception_features(model, iter_video_frames(videos / "gt.mp4"))
    b = inception_features(model, iter_video_frames(videos / "noisy.mp4"))
    assert a.shape == (12, 2048) and np.isfinite(a).all()
    same, diff = frechet_distance(a, a), frechet_distance(a, b)
    assert abs(same) < 1e-9 * diff and diff > 0
    # the full-covariance route (sets larger than the feature dimension) agrees with the Gram route
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 8)), rng.normal(1.0, 2.0, size=(30, 8))
    wide = (np.pad(x, ((0, 0), (0, 60))), np.pad(y, ((0, 0), (0, 60))))  # 68 > 40 samples: Gram route
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(*wide), rel=1e-9)
    assert frechet_distance(x, y) == pytest.approx(20.49835, rel=1e-5)

    assert main(["eval", "--test-list", "pairs.txt", "--fid"]) == 2
    assert "FID needs Inception-v3 weights" in capsys.readouterr().err
