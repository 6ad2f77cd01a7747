"""Sync correction on clips with known audio/video shifts, estimated by the expert trained in the session.

Sign convention (README "Sync correction"): a clip whose audio is delayed by +2 frames (the
sound comes 2 frames after the mouth) is reported as +2; ``--action shift`` moves its audio
2 frames earlier, after which the clip measures 0.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from train.__main__ import main
from train.preprocess import PreprocessConfig, preprocess
from train.synccorrect import ORIGINAL_AUDIO, estimate_offset, run_sync_correction
from train.syncnet import load_expert

SYNTH_BOX = (30, 140, 28, 132)  # conftest.SYNTH_BOX

# (speaker, audio delay in frames); synthetic.ClipSpec.shift_frames is the *mouth* lag = -delay
DELAYS = {"spk0000/00011": 0, "spk0001/00011": 2, "spk0002/00011": -3}


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """New clips (unseen audio) of the training speakers, written as mp4 and preprocessed like real data."""
    from skimage.data import astronaut

    from train.media import write_video
    from train.synthetic import ClipSpec, render_clip

    root = tmp_path_factory.mktemp("shifted")
    photo = astronaut()
    for entry, delay in DELAYS.items():
        speaker = int(entry[3:7])
        frames, wav = render_clip(ClipSpec(speaker, 10, 2.5, shift_frames=-delay), photo, seed=0)
        write_video(root / "raw" / f"{entry}.mp4", frames, 25.0, wav)
    report = preprocess(PreprocessConfig(str(root / "raw"), str(root / "pre"), detector="box", box=SYNTH_BOX))
    assert report["done"] == len(DELAYS)
    (root / "list.txt").write_text("".join(e + "\n" for e in DELAYS))
    return root


def test_offsets_have_the_documented_sign(trained_syncnet, shifted):
    from train.data import JpegSource

    expert = load_expert(trained_syncnet["dir"] / "best.pth")
    src = JpegSource(shifted / "pre", list(DELAYS), 96)
    for v, (entry, delay) in enumerate(DELAYS.items()):
        off, conf = estimate_offset(expert, src, v, max_shift=6)
        assert off == delay, (entry, off, conf)
        assert conf > 0


def test_drop_and_shift(trained_syncnet, shifted, tmp_path):
    ck = str(trained_syncnet["dir"] / "best.pth")
    pre = shifted / "pre"
    before = {e: (pre / e / "audio.wav").read_bytes() for e in DELAYS}

    # drop: only |offset| <= 1 survives; nothing on disk changes
    rep = run_sync_correction(pre, shifted / "list.txt", ck, tmp_path / "kept.txt", tolerance=1, max_shift=6,
                              action="drop", device="cpu", report_path=tmp_path / "drop.json")
    assert (tmp_path / "kept.txt").read_text().split() == ["spk0000/00011"]
    assert rep["histogram"] == {"-3": 1, "0": 1, "2": 1}
    assert json.loads((tmp_path / "drop.json").read_text())["histogram"] == rep["histogram"]
    assert {e: (pre / e / "audio.wav").read_bytes() for e in DELAYS} == before
    # a wider tolerance keeps the +2 clip
    rep = run_sync_correction(pre, shifted / "list.txt", ck, tmp_path / "kept2.txt", tolerance=2, max_shift=6,
                              action="drop", device="cpu")
    assert (tmp_path / "kept2.txt").read_text().split() == ["spk0000/00011", "spk0001/00011"]

    # shift (through the CLI): every clip kept, originals kept aside, the shifted clips now measure 0
    assert main(["synccorrect", "--preprocessed-root", str(pre), "--filelist", str(shifted / "list.txt"),
                 "--syncnet", ck, "--out", str(tmp_path / "shifted.txt"), "--tolerance", "1", "--max-shift", "6",
                 "--action", "shift", "--device", "cpu", "--report", str(tmp_path / "shift.json")]) == 0
    assert (tmp_path / "shifted.txt").read_text().split() == list(DELAYS)
    detail = {r["entry"]: r for r in json.loads((tmp_path / "shift.json").read_text())["clips_detail"]}
    assert detail["spk0001/00011"]["action"] == "shifted by 2"
    assert not (pre / "spk0000/00011" / ORIGINAL_AUDIO).exists()  # untouched clip
    for entry in ("spk0001/00011", "spk0002/00011"):
        assert (pre / entry / ORIGINAL_AUDIO).read_bytes() == before[entry]  # recoverable
        a, _ = sf.read(str(pre / entry / "audio.wav"))
        o, _ = sf.read(str(pre / entry / ORIGINAL_AUDIO))
        assert len(a) == len(o)
        d = DELAYS[entry] * 640
        if d > 0:
            np.testing.assert_allclose(a[: len(o) - d], o[d:], atol=1e-4)
        else:
            np.testing.assert_allclose(a[-d:], o[: len(o) + d], atol=1e-4)
    assert not list(pre.rglob("*.tmp*"))
    rep = run_sync_correction(pre, shifted / "list.txt", ck, tmp_path / "again.txt", tolerance=0, max_shift=6,
                              action="drop", device="cpu")
    assert rep["histogram"] == {"0": 3}, rep["clips_detail"]


def test_refuses_an_expert_at_chance_unless_forced(dataset, shifted, tmp_path, capsys):
    """One training step leaves the expert at chance (its recorded eval loss says so): synccorrect
    stops with one line instead of dropping clips by noise; --force runs and flags every clip."""
    from train.syncnet import SyncNetConfig, train

    ck = tmp_path / "chance"
    train(SyncNetConfig(cache=str(dataset["cache"]), train_list=str(dataset["train"]), val_list=str(dataset["val"]),
                        checkpoint_dir=str(ck), width=0.25, batch_size=4, max_steps=1, eval_interval=1,
                        eval_batches=2, checkpoint_interval=1, num_workers=0, resume="none", tensorboard=False))
    args = ["synccorrect", "--preprocessed-root", str(shifted / "pre"), "--filelist", str(shifted / "list.txt"),
            "--syncnet", str(ck / "best.pth"), "--out", str(tmp_path / "kept.txt"), "--max-shift", "6",
            "--device", "cpu", "--report", str(tmp_path / "r.json")]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("or pass --force"), err
    assert re.search(r"recorded eval loss of 0\.[6-9]\d\d \(chance = 0\.693\)", err[0]), err
    assert not (tmp_path / "kept.txt").exists() and not (tmp_path / "r.json").exists()

    assert main([*args, "--force"]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["expert_eval_loss"] > 0.6 and rep["max_shift"] == 6
    assert all(isinstance(r["flags"], list) for r in rep["clips_detail"])


def test_trained_expert_is_accepted_and_confident(trained_syncnet, shifted, tmp_path):
    rep = run_sync_correction(shifted / "pre", shifted / "list.txt", str(trained_syncnet["dir"] / "best.pth"),
                              tmp_path / "kept.txt", max_shift=6, device="cpu")
    assert rep["expert_eval_loss"] < 0.6 and rep["warnings"] == []
    assert [r["flags"] for r in rep["clips_detail"]] == [[], [], []]
