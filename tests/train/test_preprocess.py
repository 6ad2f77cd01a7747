"""Preprocess: synthetic raw LRS2 layout -> upstream's preprocessed layout, filelists, resumability."""

from __future__ import annotations

import json

import cv2
import pytest
import soundfile as sf

from train.preprocess import PreprocessConfig, find_videos, make_filelists, preprocess, read_filelist
from train.synthetic import make_dataset


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    # 30 fps and 44.1 kHz: preprocessing must convert to 25 fps / 16 kHz
    make_dataset(root, speakers=2, clips_per_speaker=1, seconds=1.2, fps=30.0, sr=44100, seed=3)
    (root / "spk0001" / "00002.mp4").write_bytes(b"not a video")  # a broken file must be reported, not fatal
    return root


def test_preprocess_layout_dlib(raw, tmp_path):
    pytest.importorskip("dlib")
    out = tmp_path / "pre"
    cfg = PreprocessConfig(str(raw), str(out), detector="dlib", workers=1, batch_size=8)
    report = preprocess(cfg)
    assert report["videos"] == 3 and report["done"] == 2
    (bad,) = report["skipped"]
    assert bad["video"] == "spk0001/00002.mp4" and bad["reason"]
    assert json.loads((out / "preprocess_report.json").read_text())["done"] == 2
    for spk in ("spk0000", "spk0001"):
        d = out / spk / "00001"
        ids = sorted(int(p.stem) for p in d.glob("*.jpg"))
        assert ids == list(range(30)), f"{d}: 1.2 s at 25 fps = frames 0..29, got {ids[:5]}..{len(ids)}"
        img = cv2.imread(str(d / "0.jpg"))
        assert 60 < img.shape[0] < 160 and 60 < img.shape[1] < 160  # a face crop, not the frame
        wav, sr = sf.read(str(d / "audio.wav"))
        assert sr == 16000 and wav.ndim == 1 and abs(len(wav) / sr - 1.2) < 0.05
    assert not list(out.rglob(".tmp-*"))

    # resumable: a rerun skips finished videos and leaves them untouched
    before = (out / "spk0000" / "00001" / "0.jpg").stat().st_mtime_ns
    report2 = preprocess(cfg)
    assert all(r["reason"] == "already preprocessed" for r in report2["results"] if r["status"] == "done")
    assert (out / "spk0000" / "00001" / "0.jpg").stat().st_mtime_ns == before


def test_preprocess_shards_and_box(raw, tmp_path):
    out = tmp_path / "pre"
    videos = find_videos(raw)
    r0 = preprocess(PreprocessConfig(str(raw), str(out), detector="box", box=(30, 140, 28, 132), shard=(0, 2)))
    r1 = preprocess(PreprocessConfig(str(raw), str(out), detector="box", box=(30, 140, 28, 132), shard=(1, 2)))
    assert r0["videos"] + r1["videos"] == len(videos)
    assert (out / "preprocess_report.shard0of2.json").is_file()
    img = cv2.imread(str(out / "spk0000" / "00001" / "5.jpg"))
    assert img.shape == (110, 104, 3)  # rows 30..139, columns 28..131


def test_filelists_split_by_folder(tmp_path):
    for spk in range(10):
        for clip in range(3):
            d = tmp_path / f"s{spk}" / f"{clip:05d}"
            d.mkdir(parents=True)
            (d / ".done.json").write_text("{}")
    a = make_filelists(tmp_path, tmp_path / "fl", val_fraction=0.1, test_fraction=0.1, seed=1)
    b = make_filelists(tmp_path, tmp_path / "fl2", val_fraction=0.1, test_fraction=0.1, seed=1)
    assert a == b  # deterministic
    assert len(a["val"]) == 3 and len(a["test"]) == 3 and len(a["train"]) == 24
    folders = {k: {e.split("/")[0] for e in v} for k, v in a.items()}
    assert not (folders["train"] & folders["val"]) and not (folders["train"] & folders["test"])
    assert read_filelist(tmp_path / "fl" / "train.txt") == a["train"]
    (tmp_path / "lrs2_test.txt").write_text("6330311066473698535/00011 NF\n\n")
    assert read_filelist(tmp_path / "lrs2_test.txt") == ["6330311066473698535/00011"]
