"""CMLR, GRID and HDTF layouts -> LRS2's preprocessed layout, with speakers recorded and splits by speaker."""

from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pytest
import soundfile as sf

from train.__main__ import main
from train.media import write_video, write_wav
from train.preprocess import PreprocessConfig, preprocess

BOX = (30, 140, 28, 132)


def _clip(seconds: float, seed: int = 0):
    """Synthetic talking face; frame k carries the value 3k in a patch inside the face box."""
    from skimage.data import astronaut

    from train.synthetic import ClipSpec, render_clip

    frames, wav = render_clip(ClipSpec(seed, 0, seconds), astronaut(), seed=0)
    for k, f in enumerate(frames):
        f[35:45, 30:40] = (3 * k) % 256
    return frames, wav


def _marker(jpg) -> float:
    return float(cv2.imread(str(jpg))[7:13, 4:10].mean())  # the patch, inside the box crop


def _write_mpg(path, frames) -> None:
    """GRID's container: MPEG-1 video in an MPEG program stream, silent (its audio comes separately)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mpeg") as c:
        s = c.add_stream("mpeg1video", rate=25)
        s.width, s.height, s.pix_fmt, s.bit_rate = 160, 160, "yuv420p", 4_000_000
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _done(pre, entry) -> dict:
    return json.loads((pre / entry / ".done.json").read_text())


def test_cmlr_video_and_separate_audio(tmp_path):
    root = tmp_path / "CMLR"
    for s in (1, 2):
        frames, wav = _clip(1.0, s)
        name = f"s{s}/20170121/section_1_000.66_001.66"
        write_video(root / "video" / f"{name}.mp4", frames)  # CMLR's videos are silent
        (root / "audio" / name).parent.mkdir(parents=True, exist_ok=True)
        write_wav(root / "audio" / f"{name}.wav", wav)
    pre = tmp_path / "pre"
    rep = preprocess(PreprocessConfig(str(root), str(pre), detector="box", box=BOX, layout="cmlr"))
    assert rep["done"] == 2, rep["skipped"]
    entry = "s1/20170121_section_1_000.66_001.66"
    meta = _done(pre, entry)
    assert meta["speaker"] == "s1" and meta["faces"] == 25 and meta["audio_seconds"] == pytest.approx(1.0, abs=0.01)


def test_grid_mpg_with_audio_root(tmp_path):
    root, audio = tmp_path / "GRID", tmp_path / "audio_25k"
    for s in (1, 2):
        frames, wav = _clip(1.0, s)
        _write_mpg(root / f"s{s}" / "bbaf2n.mpg", frames)
        (audio / f"s{s}").mkdir(parents=True)
        wav25k = np.interp(np.arange(25000) / 25000, np.arange(len(wav)) / 16000, wav)
        sf.write(str(audio / f"s{s}" / "bbaf2n.wav"), wav25k, 25000)  # GRID's audio is 25 kHz
    pre = tmp_path / "pre"
    rep = preprocess(PreprocessConfig(str(root), str(pre), detector="box", box=BOX, layout="grid",
                                      audio_root=str(audio)))
    assert rep["done"] == 2, rep["skipped"]
    meta = _done(pre, "s2/bbaf2n")
    assert meta["speaker"] == "s2" and meta["faces"] == 25
    got, sr = sf.read(str(pre / "s2" / "bbaf2n" / "audio.wav"))
    assert sr == 16000 and len(got) == pytest.approx(16000, abs=20)
    assert abs(_marker(pre / "s2" / "bbaf2n" / "24.jpg") - 72) < 8


def test_hdtf_time_ranges_cut_clips_and_splits_keep_speakers_apart(tmp_path, capsys):
    root = tmp_path / "HDTF"
    wavs = {}
    for name, seconds, seed in (("WDA_Anna_000", 4.0, 1), ("WDA_Anna_001", 1.2, 1), ("RD_Bert_000", 1.2, 2),
                                ("WRA_Carl_000", 1.2, 3), ("WRA_Unlisted_000", 1.2, 4)):
        frames, wavs[name] = _clip(seconds, seed)
        write_video(root / f"{name}.mp4", frames, 25.0, wavs[name])
    times = tmp_path / "annotation"
    times.mkdir()
    (times / "WDA_annotion_time.txt").write_text("WDA_Anna_000.mp4 00:00-00:01 00:02-00:04\nWDA_Anna_001.mp4 0-1\n")
    (times / "RD_annotion_time.txt").write_text("RD_Bert_000.mp4 00:00-00:01\n")
    (times / "WRA_annotion_time.txt").write_text("WRA_Carl_000.mp4 00:00-00:01\n")
    pre = tmp_path / "pre"
    assert main(["preprocess", "--layout", "hdtf", "--data-root", str(root), "--time-ranges", str(times),
                 "--max-seconds", "1", "--preprocessed-root", str(pre), "--box", *map(str, BOX),
                 "--filelists", str(tmp_path / "fl")]) == 0
    assert "6 of 6 videos preprocessed" in capsys.readouterr().out  # unlisted video left out
    clips = sorted(p.parent.relative_to(pre).as_posix() for p in pre.rglob(".done.json"))
    assert clips == ["RD_Bert_000/00000", "WDA_Anna_000/00000", "WDA_Anna_000/00001", "WDA_Anna_000/00002",
                     "WDA_Anna_001/00000", "WRA_Carl_000/00000"]
    # 00:02-00:04 cut into 2-3 s and 3-4 s: frames 50.. and 75.., the matching audio
    for entry, first in (("WDA_Anna_000/00001", 50), ("WDA_Anna_000/00002", 75)):
        assert _done(pre, entry)["faces"] == 25
        assert abs(_marker(pre / entry / "0.jpg") - 3 * first) < 8, entry
        got, _ = sf.read(str(pre / entry / "audio.wav"))
        seg = wavs["WDA_Anna_000"][first * 640 : first * 640 + len(got)]
        assert np.corrcoef(got, seg)[0, 1] > 0.9
    assert _done(pre, "WDA_Anna_001/00000")["speaker"] == "WDA_Anna"
    splits = {k: (tmp_path / "fl" / f"{k}.txt").read_text().split() for k in ("train", "val", "test")}
    where = {e: k for k, v in splits.items() for e in v}
    assert len(set(where.values())) == 3  # three speakers, one per split
    anna = {where[e] for e in clips if e.startswith("WDA_Anna")}
    assert len(anna) == 1  # both of Anna's videos in the same split


def test_layout_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "HDTF").mkdir()
    (tmp_path / "t.txt").write_text("x.mp4 00:05-00:02\n")
    capsys.readouterr()
    assert main(["preprocess", "--layout", "hdtf", "--data-root", str(tmp_path / "HDTF"), "--preprocessed-root",
                 str(tmp_path / "pre"), "--time-ranges", str(tmp_path / "t.txt")]) == 2
    assert "t.txt:1: '00:05-00:02' is not a time range" in capsys.readouterr().err
    assert main(["preprocess", "--layout", "cmlr", "--data-root", str(tmp_path / "HDTF"), "--preprocessed-root",
                 str(tmp_path / "pre")]) == 2
    assert "no video/ folder" in capsys.readouterr().err
