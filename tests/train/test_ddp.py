"""torchrun with 2 gloo processes == 1 process with the same total batch (sync BatchNorm, step sampler).

The comparison runs in float64 (``dtype="float64"``): the synthetic faces are near-identical
crops of one photo, which makes torch's float32 CPU BatchNorm backward lose ~1% of the face
encoder's gradient to cancellation, and 3 SGD steps at lr 0.05 amplify any 1e-6 difference
30-300x per step (two float32 *single-process* runs with 1 vs 2 threads already differ by 2-4%
of the update). In float64 the two runs agree to 5e-10 of the update, so a wrong sampler,
BatchNorm statistic, gradient average or accumulation shows up at >= 1e-2 (README "DDP").
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch

from train.syncnet import SyncNetConfig, build_syncnet, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rel_gap(a: dict, b: dict, init: dict, keys: list[str]) -> tuple[float, float]:
    moved = torch.cat([(a[k] - init[k]).flatten() for k in keys]).norm()
    gap = torch.cat([(a[k] - b[k]).flatten() for k in keys]).norm()
    return float(gap / moved), float(moved)


def test_two_process_gloo_matches_single_process(dataset, tmp_path):
    # accum 2: single = 2 micro-batches of 4; DDP = 2 micro-steps x 2 ranks x 2 samples, the same 4
    # samples per micro-step (StepSampler), so even BatchNorm sees identical batches.
    common = {"cache": str(dataset["cache"]), "train_list": str(dataset["train"]), "val_list": str(dataset["val"]),
                  "width": 0.25, "batch_size": 8, "accum": 2, "lr": 0.05, "optimizer": "sgd", "max_steps": 3, "eval_interval": 3,
                  "eval_batches": 1, "checkpoint_interval": 3, "log_interval": 1, "num_workers": 0, "resume": "none",
                  "tensorboard": False, "device": "cpu", "dtype": "float64"}
    single = train(SyncNetConfig(checkpoint_dir=str(tmp_path / "single"), **common))

    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()), "-m", "train", "syncnet", "--checkpoint-dir", str(tmp_path / "ddp")]
    for k, v in common.items():
        flag = k.replace("_", "-")
        args += [f"--{flag}" if v else f"--no-{flag}"] if isinstance(v, bool) else [f"--{flag}", str(v)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]

    a = torch.load(tmp_path / "single" / "latest.pth", weights_only=True)
    b = torch.load(tmp_path / "ddp" / "latest.pth", weights_only=True)
    assert a["global_step"] == b["global_step"] == 3
    assert set(a["state_dict"]) == set(b["state_dict"])  # no "module." prefix, same keys
    torch.manual_seed(0)
    init = {k: v.double() for k, v in build_syncnet(96, 0.25).state_dict().items() if v.is_floating_point()}
    sa, sb = a["state_dict"], b["state_dict"]
    for part in ("face_encoder", "audio_encoder"):
        keys = [k for k in init if k.startswith(part) and "running" not in k]
        gap, moved = _rel_gap(sa, sb, init, keys)
        assert moved > 0.5, (part, moved)
        assert gap < 1e-7, (part, gap)  # measured 5e-10; a real mismatch gives >= 1e-2
        # BatchNorm running statistics: global mean and unbiased variance, like one process
        running = [k for k in init if k.startswith(part) and "running" in k]
        gap, _ = _rel_gap(sa, sb, init, running)
        assert gap < 1e-7, (part, "running stats", gap)
    # the eval loss is the same fixed sample set, split over the ranks
    import json

    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]  # rank 0 only
    ddp_out = json.loads(line)
    assert abs(ddp_out["eval_loss"] - single["eval_loss"]) < 1e-6
