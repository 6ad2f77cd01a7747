"""torchrun with 2 gloo processes == 1 process with the same total batch (SyncBatchNorm, step sampler)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch

from train.syncnet import SyncNetConfig, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.xfail(strict=True, reason="known gap: face-encoder weights diverge between 2-process gloo and "
                   "1-process runs (audio encoder matches); under investigation")
def test_two_process_gloo_matches_single_process(dataset, tmp_path):
    common = dict(cache=str(dataset["cache"]), train_list=str(dataset["train"]), val_list=str(dataset["val"]),
                  width=0.25, batch_size=8, lr=0.05, optimizer="sgd", max_steps=3, eval_interval=3, eval_batches=2,
                  checkpoint_interval=3, log_interval=1, num_workers=0, resume="none", tensorboard=False,
                  device="cpu")
    single = train(SyncNetConfig(checkpoint_dir=str(tmp_path / "single"), **common))

    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()), "-m", "train", "syncnet", "--checkpoint-dir", str(tmp_path / "ddp")]
    for k, v in common.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[:3000]

    a = torch.load(tmp_path / "single" / "latest.pth", weights_only=True)
    b = torch.load(tmp_path / "ddp" / "latest.pth", weights_only=True)
    assert a["global_step"] == b["global_step"] == 3
    assert set(a["state_dict"]) == set(b["state_dict"])  # no "module." prefix, same keys
    # Same trajectory up to float reduction order: the gap between the two runs must be tiny
    # compared with how far training moved the weights. (SGD: Adam's first steps are sign(g)
    # for near-zero gradients, which turns rounding noise into lr-sized differences.)
    from train.syncnet import build_syncnet

    torch.manual_seed(0)
    init = build_syncnet(96, 0.25).state_dict()
    keys = [k for k, v in init.items() if v.is_floating_point() and "running" not in k]
    moved = torch.cat([(a["state_dict"][k] - init[k]).flatten() for k in keys]).norm()
    gap = torch.cat([(a["state_dict"][k] - b["state_dict"][k]).flatten() for k in keys]).norm()
    assert moved > 0.1, moved
    assert gap < 0.02 * moved, (float(gap), float(moved))
