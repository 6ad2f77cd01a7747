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
    from train.data import build_cache
    from train.preprocess import PreprocessConfig, make_filelists, preprocess
    from train.synthetic import make_dataset

    logging.getLogger("train").setLevel(logging.WARNING)
    root = tmp_path_factory.mktemp("synth")
    make_dataset(root / "raw", speakers=6, clips_per_speaker=2, seconds=4.0, seed=0)
    report = preprocess(PreprocessConfig(str(root / "raw"), str(root / "pre"), detector="box", box=SYNTH_BOX,
                                         workers=2))
    assert report["done"] == 12, report["skipped"]
    splits = make_filelists(root / "pre", root / "filelists", val_fraction=0.2, test_fraction=0.0)
    build_cache(root / "pre", splits["train"] + splits["val"], root / "cache96", 96)
    return {"root": root, "raw": root / "raw", "pre": root / "pre", "cache": root / "cache96",
            "train": root / "filelists" / "train.txt", "val": root / "filelists" / "val.txt"}
