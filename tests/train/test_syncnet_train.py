"""The expert SyncNet learns lip sync on the synthetic data (eval loss clearly below ln 2)."""

from __future__ import annotations

import json
import math

import torch

from train.runtime import read_metrics
from train.syncnet import SyncNetConfig, load_expert, train


def test_syncnet_learns(trained_syncnet):
    ck, out = trained_syncnet["dir"], trained_syncnet["result"]
    evals = [m["loss"] for m in read_metrics(ck / "logs") if m["split"] == "eval"]
    print("syncnet eval losses:", evals)
    assert len(evals) == 3
    assert out["best"] < 0.60 < math.log(2), f"eval losses {evals}"
    # checkpoints in upstream's layout
    for name in ("best.pth", "latest.pth", "checkpoint_step000000072.pth"):
        d = torch.load(ck / name, map_location="cpu", weights_only=True)
        assert {"state_dict", "optimizer", "global_step", "global_epoch"} <= set(d)
    assert torch.load(ck / "latest.pth", weights_only=True)["global_step"] == 72
    expert = load_expert(ck / "best.pth")
    assert not expert.training
    (ck / "result.json").write_text(json.dumps(out))


def test_full_size_syncnet_checkpoint_loads_in_engine(tmp_path, dataset):
    """width 1 (the real architecture): two steps, and the file loads with the engine's loader."""
    from wav2lip_uhq.models import load_model

    cfg = SyncNetConfig(cache=str(dataset["cache"]), train_list=str(dataset["train"]), val_list=str(dataset["val"]),
                        checkpoint_dir=str(tmp_path), batch_size=4, max_steps=2, eval_interval=2, eval_batches=1,
                        checkpoint_interval=2, num_workers=0, resume="none", tensorboard=True)
    train(cfg)
    model = load_model(tmp_path / "latest.pth", kind="syncnet")
    assert model.architecture.name == "syncnet_96"
    assert list((tmp_path / "logs" / "tensorboard").iterdir())


def test_syncnet_384_family_trains_at_288_and_loads_in_engine(tmp_path, dataset):
    """The 288 fork's SyncNet_color_384 (1024-d) trains on a 288 px cache; the engine loads it."""
    from train.data import build_cache
    from train.preprocess import list_preprocessed
    from wav2lip_uhq.models import load_model

    entries = list_preprocessed(dataset["pre"])[:6]
    cache = tmp_path / "cache288"
    build_cache(dataset["pre"], entries, cache, 288)
    lists = tmp_path / "list.txt"
    lists.write_text("".join(e + "\n" for e in entries))
    cfg = SyncNetConfig(cache=str(cache), train_list=str(lists), val_list=str(lists), img_size=288,
                        checkpoint_dir=str(tmp_path / "ck"), batch_size=2, max_steps=1, eval_interval=1,
                        eval_batches=1, checkpoint_interval=1, num_workers=0, resume="none", tensorboard=False)
    train(cfg)
    model = load_model(tmp_path / "ck" / "latest.pth", kind="syncnet")
    assert model.architecture.name == "syncnet_288" and model.embedding_dim == 1024
