"""Generator training: L1 decreases, --disc runs, exact resume after a kill, checkpoints load in the engine."""

from __future__ import annotations

import os

import pytest
import torch

from train.runtime import read_metrics
from train.wav2lip import Wav2LipConfig, train
from wav2lip_uhq.models import SyncNet, save_checkpoint


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    """A full-size 96 px expert in the released layout (random weights are enough to exercise the sync path)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("expert") / "lipsync_expert.pth"
    save_checkpoint(SyncNet(96), path)
    return path


def _cfg(dataset, ck, **kw) -> Wav2LipConfig:
    base = {"cache": str(dataset["cache"]), "train_list": str(dataset["train"]), "val_list": str(dataset["val"]),
                "checkpoint_dir": str(ck), "batch_size": 2, "lr": 5e-4, "eval_batches": 1, "log_interval": 1, "num_workers": 0,
                "resume": "auto", "tensorboard": False, "sample_interval": 0}
    base.update(kw)
    return Wav2LipConfig(**base)


def test_generator_l1_decreases_and_engine_loads(dataset, tmp_path):
    ck = tmp_path / "ck"
    out = train(_cfg(dataset, ck, max_steps=10, eval_interval=10, checkpoint_interval=10, sample_interval=5))
    l1 = [m["l1"] for m in read_metrics(ck / "logs") if m["split"] == "train"]
    assert len(l1) == 10
    assert sum(l1[-3:]) / 3 < 0.7 * l1[0], l1
    assert (ck / "samples" / "samples_step000000005.jpg").is_file()
    assert out["eval"]["l1"] < l1[0]

    from wav2lip_uhq.models import load_model

    model = load_model(ck / "checkpoint_step000000010.pth", kind="wav2lip")
    assert model.architecture.name == "wav2lip_96"

    pipeline = pytest.importorskip("wav2lip_uhq.pipeline")
    from wav2lip_uhq.config import FaceOptions, RunConfig

    clip = dataset["raw"] / "spk0000" / "00004.mp4"
    result = pipeline.run(RunConfig(face=clip, audio=clip, checkpoint=ck / "latest.pth", out=tmp_path / "o.mp4",
                                    mode="fast", device="cpu", faces=FaceOptions(box=(30, 140, 28, 132)),
                                    allow_download=False, cache_dir=tmp_path / "cache"))
    assert result.output.is_file() and result.frames >= 60


def test_resume_after_kill_matches_uninterrupted_run(dataset, expert, tmp_path):
    kw = {"max_steps": 4, "eval_interval": 100, "checkpoint_interval": 2, "disc": True, "syncnet_checkpoint": str(expert),
              "sync_schedule": "step:1", "keep_checkpoints": 1}
    full = tmp_path / "full"
    train(_cfg(dataset, full, **kw))
    ref = {m["step"]: m for m in read_metrics(full / "logs") if m["split"] == "train"}
    assert ref[4]["sync"] > 0 and ref[4]["perceptual"] > 0 and ref[4]["disc_real"] > 0

    killed = tmp_path / "killed"
    train(_cfg(dataset, killed, **{**kw, "max_steps": 2}))  # "killed" right after the step-2 checkpoint
    # a kill in the middle of a later save leaves only a temp file; the previous checkpoint stays valid
    (killed / f".latest.pth.{os.getpid()}.tmp").write_bytes(b"\x00" * 100)
    train(_cfg(dataset, killed, **kw))
    got = {m["step"]: m for m in read_metrics(killed / "logs") if m["split"] == "train"}
    assert sorted(got) == [1, 2, 3, 4]  # resumed at step 3, not from scratch
    for step in (3, 4):
        for key in ("loss", "l1", "sync", "perceptual", "disc_real", "disc_fake"):
            assert got[step][key] == pytest.approx(ref[step][key], rel=1e-4, abs=1e-6), (step, key)
    a = torch.load(full / "latest.pth", weights_only=True)
    b = torch.load(killed / "latest.pth", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    assert b["train_state"]["sync_schedule"]["on"]
    assert (killed / "disc_checkpoint_step000000004.pth").is_file()
    # keep_checkpoints=1 prunes older step files; latest.pth is the newest one, not a second copy on disk
    assert sorted(p.name for p in killed.glob("*checkpoint_step*.pth")) == [
        "checkpoint_step000000004.pth", "disc_checkpoint_step000000004.pth"]
    assert os.path.samefile(killed / "latest.pth", killed / "checkpoint_step000000004.pth")
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [192, 256, 288])
def test_higher_resolution_generator_trains_and_loads_in_engine(dataset, expert, tmp_path, size):
    """One step with the visual-quality discriminator and the sync loss at 192/256/288 px (a cache
    built at that size); the checkpoint loads in the engine as that architecture."""
    from train.data import build_cache
    from train.preprocess import list_preprocessed
    from wav2lip_uhq.models import load_model

    entries = list_preprocessed(dataset["pre"])[:8]
    cache = tmp_path / f"cache{size}"
    build_cache(dataset["pre"], entries, cache, size)
    lists = tmp_path / "list.txt"
    lists.write_text("".join(e + "\n" for e in entries))
    ck = tmp_path / "ck"
    train(_cfg(dataset, ck, cache=str(cache), train_list=str(lists), val_list=str(lists), img_size=size,
               batch_size=1, max_steps=1, eval_interval=1, checkpoint_interval=1, disc=True,
               syncnet_checkpoint=str(expert), sync_schedule="constant"))
    model = load_model(ck / "latest.pth", kind="wav2lip")
    assert model.architecture.name == f"wav2lip_{size}"
    assert load_model(ck / "disc_checkpoint_step000000001.pth", kind="disc_qual").architecture.img_size == size
