"""Every command in train/README.md's ``bash`` blocks runs as written, in order, on tiny synthetic data.

The commands are read from the README (so the docs cannot drift from the CLI). Each one is run
verbatim; only flags that shrink the run are appended after it (argparse keeps the last value),
listed in SHRINK per command. Files the README assumes you have (syncnet_python's model, an
Inception-v3 file, a result video and its pairs list) are made here with random weights.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.__main__ import main

README = Path(__file__).resolve().parents[2] / "train" / "README.md"
FACE_BOX = ["30", "140", "28", "132"]  # where the synthetic faces sit (conftest.SYNTH_BOX, as TOP BOTTOM LEFT RIGHT)
TINY_TRAIN = ["--max-steps", "1", "--eval-interval", "1", "--checkpoint-interval", "1", "--eval-batches", "1",
              "--num-workers", "0", "--device", "cpu", "--width", "0.25", "--no-tensorboard"]
SHRINK = {
    "synthetic": ["--speakers", "4", "--clips", "2", "--seconds", "1.6"],
    "preprocess": ["--box", *FACE_BOX, "--device", "cpu", "--workers", "1"],
    "cache": ["--workers", "1"],
    "syncnet": [*TINY_TRAIN, "--batch-size", "4"],
    # the tiny expert is at chance (--force), and its offsets must not empty the list (tolerance = search range)
    "synccorrect": ["--device", "cpu", "--max-shift", "2", "--tolerance", "2", "--force"],
    "wav2lip": [*TINY_TRAIN, "--batch-size", "2", "--sample-interval", "0"],
    "eval": ["--device", "cpu", "--vshift", "2", "--face-box", *FACE_BOX],
}


def readme_commands(text: str) -> list[list[str]]:
    """argv of every command in the ``bash`` blocks (continuations joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                commands.append(shlex.split(line))
    return commands


def _given_files(cwd: Path) -> None:
    """What the README's eval lines assume you have: syncnet_python's model, Inception weights, a result."""
    from torchvision.models import inception_v3

    from train.lse import SyncNetLSE
    from wav2lip_uhq.models.fill import fill_rule_state_dict

    torch.save(fill_rule_state_dict(SyncNetLSE()), cwd / "syncnet_v2.model")
    torch.manual_seed(0)
    torch.save(inception_v3(weights=None, aux_logits=False, init_weights=True).state_dict(),
               cwd / "inception_v3_google-0cc3c7bd.pth")
    from skimage.data import astronaut

    from train.media import write_video
    from train.synthetic import ClipSpec, render_clip

    frames, wav = render_clip(ClipSpec(0, 9, 0.6), astronaut(), seed=0)  # 15 frames keep FID cheap
    write_video(cwd / "gt.mp4", frames, 25.0, wav)
    write_video(cwd / "result.mp4", [f[:, ::-1] for f in frames], 25.0, wav)
    (cwd / "pairs.txt").write_text("result.mp4 gt.mp4\n")


def _run(argv: list[str], cwd: Path) -> None:
    if argv[:3] == ["python", "-m", "train"]:
        sub = argv[3]
        assert main([*argv[3:], *SHRINK[sub]]) == 0, argv
        return
    assert argv[0] == "torchrun", f"README bash blocks hold only `python -m train` and torchrun lines: {argv}"
    m = argv.index("-m")
    assert argv[m + 1 : m + 2] == ["train"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *argv[1:], *SHRINK[argv[m + 2]]]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 logs, rank 1 only warns: no line of rank 1's progress
    assert "rank 1/2" not in proc.stderr and proc.stderr.count("eval loss") == 1, proc.stderr[-3000:]


def test_every_readme_command_runs_as_written(tmp_path, monkeypatch):
    commands = readme_commands(README.read_text())
    subs = [c[3] if c[0] == "python" else "torchrun" for c in commands]
    assert {"synthetic", "preprocess", "cache", "syncnet", "torchrun", "synccorrect", "wav2lip", "eval"} <= set(subs)
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        if argv[:4] == ["python", "-m", "train", "eval"] and not (tmp_path / "result.mp4").exists():
            _given_files(tmp_path)
        _run(argv, tmp_path)

    assert (tmp_path / "filelists" / "train_synced.txt").read_text().split()
    for ck in ("syncnet288", "w2l288", "w2l288_hq"):
        assert torch.load(tmp_path / "ck" / ck / "latest.pth", weights_only=True)["train_state"]["config"][
            "img_size"] == 288
    assert (tmp_path / "ck" / "w2l288_hq" / "disc_checkpoint_step000000001.pth").is_file()
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary["mouth_PSNR"] > 0 and "FID" in summary


@pytest.mark.parametrize("flag", ["--disc", "--amp", "--sync-bn", "--tensorboard"])
def test_boolean_settings_are_switches(flag):
    from train.config import add_dataclass_args, build_config
    from train.wav2lip import Wav2LipConfig

    p = argparse.ArgumentParser()
    add_dataclass_args(p, Wav2LipConfig)
    name = flag[2:].replace("-", "_")
    assert getattr(build_config(Wav2LipConfig, p.parse_args([flag])), name) is True
    assert getattr(build_config(Wav2LipConfig, p.parse_args(["--no-" + flag[2:]])), name) is False
    with pytest.raises(SystemExit):
        p.parse_args([flag, "true"])  # switches take no value
