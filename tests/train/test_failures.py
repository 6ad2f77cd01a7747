"""Clean failures: one line and a non-zero exit for bad input; no leftovers; resumes that mean what they say."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from train.__main__ import main
from train.runtime import publish_copy, read_metrics, step_name

BOX = ["--box", "30", "140", "28", "132"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_preprocess_without_videos_fails_with_one_line(tmp_path, capsys):
    capsys.readouterr()
    missing = tmp_path / "nope"
    assert main(["preprocess", "--data-root", str(missing), "--preprocessed-root", str(tmp_path / "pre"), *BOX]) == 2
    line = _one_error_line(capsys)
    assert str(missing) in line and "--data-root" in line
    (tmp_path / "empty").mkdir()
    assert main(["preprocess", "--data-root", str(tmp_path / "empty"), "--preprocessed-root", str(tmp_path / "pre"),
                 *BOX]) == 2
    assert "no video files" in _one_error_line(capsys)
    assert not (tmp_path / "pre").exists()


def test_missing_filelist_names_the_flag(dataset, tmp_path, capsys):
    capsys.readouterr()
    assert main(["syncnet", "--cache", str(dataset["cache"]), "--checkpoint-dir", str(tmp_path / "ck"),
                 "--val-list", str(dataset["val"]), "--device", "cpu"]) == 2  # default filelists/train.txt
    line = _one_error_line(capsys)
    assert "filelists/train.txt: no such filelist; pass --train-list FILE" in line


def test_killed_workers_temp_folders_are_cleaned(dataset, tmp_path):
    """A worker killed mid-video leaves ``.tmp-*``: the next run removes it (a live process's folder stays)."""
    from train.preprocess import OWNER, clean_stale_tmp

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    pid = int(dead.stdout)
    pre = tmp_path / "pre"
    stale = pre / "spk0000" / f".tmp-00001-{pid}"  # the layout of a worker killed before it wrote .owner.json
    stale.mkdir(parents=True)
    (stale / "0.jpg").write_bytes(b"half")
    live = pre / "spk0000" / f".tmp-00002-{pid + 1}"
    live.mkdir()
    (live / OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    other_host = pre / "spk0001" / ".tmp-00001-1"
    other_host.mkdir(parents=True)
    (other_host / OWNER).write_text(json.dumps({"host": "another-machine", "pid": pid}))

    assert main(["preprocess", "--data-root", str(dataset["raw"] / "spk0000"), "--preprocessed-root", str(pre),
                 *BOX]) == 0
    assert not stale.exists() and live.exists() and other_host.exists()
    assert (pre / "00001" / ".done.json").is_file() and clean_stale_tmp(pre) == 0


def _syncnet_args(dataset, ck, *extra: str) -> list[str]:
    return ["syncnet", "--cache", str(dataset["cache"]), "--train-list", str(dataset["train"]), "--val-list",
            str(dataset["val"]), "--checkpoint-dir", str(ck), "--width", "0.25", "--batch-size", "4",
            "--eval-batches", "1", "--eval-interval", "100", "--log-interval", "1", "--num-workers", "0",
            "--device", "cpu", "--no-tensorboard", "--keep-checkpoints", "5", *extra]


def test_resume_logs_each_step_once_and_refuses_changed_settings(dataset, tmp_path, capsys):
    ck = tmp_path / "ck"
    assert main(_syncnet_args(dataset, ck, "--max-steps", "3", "--checkpoint-interval", "2")) == 0
    # killed after logging step 3, before its checkpoint: latest is still step 2
    (ck / step_name(3)).unlink()
    publish_copy(ck / step_name(2), ck / "latest.pth")
    capsys.readouterr()
    assert main(_syncnet_args(dataset, ck, "--max-steps", "4", "--checkpoint-interval", "2", "--lr", "0.01")) == 2
    line = _one_error_line(capsys)
    assert "lr: 0.0001 -> 0.01" in line and "--force" in line
    assert main(_syncnet_args(dataset, ck, "--max-steps", "4", "--checkpoint-interval", "2")) == 0
    steps = [m["step"] for m in read_metrics(ck / "logs") if m["split"] == "train"]
    assert steps == [1, 2, 3, 4]
    assert [m["step"] for m in read_metrics(ck / "logs") if m["split"] == "eval"] == [4]
    assert main(_syncnet_args(dataset, ck, "--max-steps", "5", "--checkpoint-interval", "2", "--lr", "0.01",
                              "--force")) == 0
    assert [m["step"] for m in read_metrics(ck / "logs") if m["split"] == "train"] == [1, 2, 3, 4, 5]
