"""The enhanced mode end to end: restoration (random-weight GFPGAN via spandrel), super-resolution
and the face-parsing mask, through the real pipeline on the real photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_helpers import small_gfpgan_file, small_upscaler_file
from wav2lip_uhq.config import CompositeOptions, FaceOptions, RunConfig
from wav2lip_uhq.pipeline import LipSyncPipeline
from wav2lip_uhq.video import EncodeSettings, iter_frames


@pytest.fixture(scope="module")
def gfpgan_path(tmp_path_factory):
    return small_gfpgan_file(tmp_path_factory.mktemp("gfpgan"))


@pytest.fixture(scope="module")
def upscaler_path(tmp_path_factory):
    return small_upscaler_file(tmp_path_factory.mktemp("sr"))


@pytest.fixture(scope="module")
def parser_path(tmp_path_factory):
    from wav2lip_uhq.parsing import BiSeNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("parser") / "79999_iter.pth"
    torch.save(BiSeNet().state_dict(), path)
    return path


def _config(tmp_path, face, audio, ckpt, **composite):
    return RunConfig(face=face, audio=audio, checkpoint=ckpt, out=tmp_path / f"o{len(list(tmp_path.iterdir()))}.mkv",
                     mode="enhanced", faces=FaceOptions(detector="dlib"), encode=EncodeSettings(lossless=True),
                     composite=CompositeOptions(**composite), cache_dir=tmp_path / "c", batch_size=8)


def test_enhanced_restores_inside_the_mask_only(astronaut_png, speech_short, w2l_checkpoint, gfpgan_path,
                                                upscaler_path, tmp_path):
    pipe = LipSyncPipeline("cpu")
    improved = pipe.run(_config(tmp_path, astronaut_png, speech_short, w2l_checkpoint, restorer=gfpgan_path))
    src = next(iter_frames(astronaut_png))
    out = np.stack(list(iter_frames(improved.output)))
    changed = np.any(out != src[None], axis=(0, 3))
    ys, xs = np.nonzero(changed)
    assert changed.any() and ys.min() > 110 and ys.max() < 200 and xs.min() > 165 and xs.max() < 285
    # strength 0: restoration contributes nothing, the result equals the improved mode's
    cfg = _config(tmp_path, astronaut_png, speech_short, w2l_checkpoint, restorer=gfpgan_path, restore_strength=0.0)
    plain = np.stack(list(iter_frames(pipe.run(cfg).output)))
    cfg = _config(tmp_path, astronaut_png, speech_short, w2l_checkpoint)
    cfg.mode = "improved"
    np.testing.assert_array_equal(plain, np.stack(list(iter_frames(pipe.run(cfg).output))))
    assert not np.array_equal(plain, out)
    # with super-resolution of the 96 px output the run still stays inside the same region
    sr = pipe.run(_config(tmp_path, astronaut_png, speech_short, w2l_checkpoint, restorer=gfpgan_path,
                          upscaler=upscaler_path))
    srf = np.stack(list(iter_frames(sr.output)))
    changed_sr = np.any(srf != src[None], axis=(0, 3))
    assert changed_sr.any() and not changed_sr[:100].any()


def test_face_parsing_mask_limits_the_change(astronaut_png, speech_short, w2l_checkpoint, parser_path, tmp_path,
                                             monkeypatch):
    import wav2lip_uhq.parsing as parsing

    pipe = LipSyncPipeline("cpu")
    cfg = _config(tmp_path, astronaut_png, speech_short, w2l_checkpoint, parser=parser_path)
    cfg.mode = "improved"
    seen = []
    real = parsing.parsing_masks_for_rois

    def occluded(frames, rois, parser, **kw):  # the real network runs; then pretend a hand covers it all
        seen.append(real(frames, rois, parser, **kw))
        return [np.zeros_like(m) for m in seen[-1]]

    monkeypatch.setattr(parsing, "parsing_masks_for_rois", occluded)
    result = pipe.run(cfg)
    src = next(iter_frames(astronaut_png))
    for frame in iter_frames(result.output):
        np.testing.assert_array_equal(frame, src)
    assert seen and all(m is not None and m.dtype == np.float32 for batch in seen for m in batch)
