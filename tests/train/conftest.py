"""Shared tiny synthetic dataset for the training tests (built once per session, offline)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

# Synthetic faces sit at this box in every 160x160 frame (top, bottom, left, right): a fixed
# box keeps the shared fixture fast; the dlib detector is exercised in test_preprocess.
SYNTH_BOX = (30, 140, 28, 132)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> dict[str, Path]:
    """6 speakers x 4 clips x 2.5 s. Val = the 4th clip of every speaker (held-out clips of known
    speakers: 6 synthetic speakers are too few to test generalisation to new faces)."""
    from train.data import build_cache
    from train.preprocess import PreprocessConfig, list_preprocessed, preprocess
    from train.synthetic import make_dataset

    logging.getLogger("train").setLevel(logging.WARNING)
    root = tmp_path_factory.mktemp("synth")
    make_dataset(root / "raw", speakers=6, clips_per_speaker=4, seconds=2.5, seed=0)
    report = preprocess(PreprocessConfig(str(root / "raw"), str(root / "pre"), detector="box", box=SYNTH_BOX,
                                         workers=2))
    assert report["done"] == 24, report["skipped"]
    entries = list_preprocessed(root / "pre")
    val = [e for e in entries if e.endswith("/00004")]
    train = [e for e in entries if e not in val]
    fl = root / "filelists"
    fl.mkdir()
    (fl / "train.txt").write_text("".join(e + "\n" for e in train))
    (fl / "val.txt").write_text("".join(e + "\n" for e in val))
    build_cache(root / "pre", entries, root / "cache96", 96)
    return {"root": root, "raw": root / "raw", "pre": root / "pre", "cache": root / "cache96",
            "train": fl / "train.txt", "val": fl / "val.txt"}


@pytest.fixture(scope="session")
def trained_syncnet(dataset, tmp_path_factory) -> dict:
    """The narrowed expert trained on the shared dataset (asserted in test_syncnet_train; used as the
    offset estimator by test_synccorrect)."""
    from train.syncnet import SyncNetConfig, train

    ck = tmp_path_factory.mktemp("syncnet_ck")
    cfg = SyncNetConfig(cache=str(dataset["cache"]), train_list=str(dataset["train"]), val_list=str(dataset["val"]),
                        checkpoint_dir=str(ck), width=0.25, batch_size=32, lr=1e-3, max_steps=72,
                        eval_interval=24, eval_batches=8, checkpoint_interval=36, log_interval=10, num_workers=0,
                        resume="none", tensorboard=False)
    return {"dir": ck, "result": train(cfg)}
