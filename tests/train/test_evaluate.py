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
    assert s["PSNR"] == 100.0 and s["SSIM"] == pytest.approx(1.0)
    assert abs(s["FID"]) < 1e-6  # FID(a, a) = 0 up to rounding

    (tmp_path / "noisy.txt").write_text(f"{noisy} {gt}\n")
    out = tmp_path / "noisy.json"
    assert main(["eval", "--test-list", str(tmp_path / "noisy.txt"), "--device", "cpu", "--out", str(out)]) == 0
    s = json.loads(out.read_text())["summary"]
    assert 10 < s["PSNR"] < 35 and 0 < s["SSIM"] < 0.9
    assert "FID" not in s and "LSE-D" not in s


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

    with pytest.raises(SystemExit):
        main(["eval", "--test-list", "pairs.txt", "--fid"])
    assert "FID needs Inception-v3 weights" in capsys.readouterr().err
