"""``enhanced`` restoration and ``uhq`` SD refinement on MuseTalk's output (tiny MuseTalk networks,
a random-weight GFPGAN, the tiny SD refiner of test_refine; CPU, offline): the stages after the
generator run on its 256 px faces as composited, change only the mouth region, and keep the
frame count and size."""

from __future__ import annotations

import numpy as np
import pytest
from musetalk_helpers import write_folder
from test_enhanced import gfpgan_path  # noqa: F401 - fixture
from test_refine import options, tiny  # noqa: F401 - fixture

from wav2lip_uhq.config import CompositeOptions, FaceOptions, RunConfig
from wav2lip_uhq.pipeline import LipSyncPipeline
from wav2lip_uhq.video import EncodeSettings, iter_frames


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("mtm") / "models")


@pytest.fixture(scope="module")
def six_frames(tmp_path_factory, reference):
    """0.24 s of the real speech: 6 frames at 25 fps."""
    import soundfile as sf

    wav, sr = sf.read(reference / "speech_16k.wav", dtype="float32")
    path = tmp_path_factory.mktemp("audio") / "speech_024.wav"
    sf.write(path, wav[int(0.5 * sr) : int(0.74 * sr)], sr)
    return path


@pytest.fixture(scope="module")
def improved(folder, astronaut_png, six_frames, tmp_path_factory):
    """MuseTalk's ``improved`` result, the baseline the later stages add to."""
    tmp = tmp_path_factory.mktemp("improved")
    pipe = LipSyncPipeline("cpu")
    result = pipe.run(_config(folder, astronaut_png, six_frames, tmp, "improved"))
    return pipe, np.stack(list(iter_frames(result.output))).astype(int)


def _config(folder, face, audio, tmp, mode, **kw):
    return RunConfig(face=face, audio=audio, checkpoint=folder, out=tmp / f"{mode}.mkv", mode=mode,
                     faces=FaceOptions(detector="dlib"), encode=EncodeSettings(lossless=True),
                     cache_dir=tmp / "cache", batch_size=4, **kw)


def _changed_box(a, b):
    ys, xs = np.nonzero(np.abs(a - b).max(axis=(0, 3)) > 0)
    return (ys.min(), ys.max(), xs.min(), xs.max()), len(ys)


def _inside(inner, outer, slack=2):
    return (inner[0] >= outer[0] - slack and inner[1] <= outer[1] + slack and inner[2] >= outer[2] - slack
            and inner[3] <= outer[3] + slack)


def test_enhanced_restores_musetalks_mouth_only(folder, improved, astronaut_png, six_frames, gfpgan_path,  # noqa: F811
                                                tmp_path):
    pipe, base = improved
    src = next(iter_frames(astronaut_png)).astype(int)
    mouth, _ = _changed_box(base, src[None])  # where MuseTalk's face was composited
    # the lower face of the 512 px photo (about rows 122-183, columns 180-270), not the whole frame
    assert mouth[0] > 100 and mouth[1] < 220 and mouth[2] > 150 and mouth[3] < 300
    result = pipe.run(_config(folder, astronaut_png, six_frames, tmp_path, "enhanced",
                              composite=CompositeOptions(restorer=gfpgan_path)))
    out = np.stack(list(iter_frames(result.output))).astype(int)
    assert out.shape == base.shape and len(out) == 6  # same frames, same size
    box, n = _changed_box(out, base)
    assert n > 200 and _inside(box, mouth)  # the restorer changed MuseTalk's mouth, nothing else
    assert not np.any(np.abs(out - src[None]).max(axis=(0, 3))[: mouth[0] - 2] > 0)  # above: the source


def test_uhq_refines_musetalks_mouth_only(folder, improved, astronaut_png, six_frames, tiny, tmp_path):  # noqa: F811
    from wav2lip_uhq.refine import ControlSpec

    pipe, base = improved
    src = next(iter_frames(astronaut_png)).astype(int)
    mouth, _ = _changed_box(base, src[None])
    stages = []
    refine = options(checkpoint=tiny["folder"], controlnets=(ControlSpec(str(tiny["cn"]), "canny"),))
    result = pipe.run(_config(folder, astronaut_png, six_frames, tmp_path, "uhq", refine=refine),
                      progress=lambda s, d, t: stages.append(s))
    out = np.stack(list(iter_frames(result.output))).astype(int)
    assert out.shape == base.shape and len(out) == 6
    box, n = _changed_box(out, base)
    assert n > 200 and _inside(box, mouth, slack=4)  # SD refined MuseTalk's mouth region only
    assert any(s.startswith("refining, crop ") for s in stages)
