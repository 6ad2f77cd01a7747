"""Shared training machinery: checkpoints with resumable state, AMP, logs and sample grids."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from wav2lip_uhq.files import write_atomic
from wav2lip_uhq.models import save_checkpoint

from .distributed import Dist

log = logging.getLogger(__name__)

LATEST = "latest.pth"
BEST = "best.pth"


def step_name(step: int, prefix: str = "checkpoint") -> str:
    return f"{prefix}_step{step:09d}.pth"  # upstream's naming


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any] | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(state["cuda"])


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """The full dict (weights, optimizer, step, train_state); tensors and plain containers only."""
    return torch.load(str(path), map_location="cpu", weights_only=True)


def find_resume(checkpoint_dir: str | Path) -> Path | None:
    """``latest.pth`` if present, else the highest ``checkpoint_step*.pth`` (upstream's files)."""
    d = Path(checkpoint_dir)
    if (d / LATEST).is_file():
        return d / LATEST
    steps = sorted(d.glob("checkpoint_step*.pth"))
    return steps[-1] if steps else None


def prune_step_checkpoints(checkpoint_dir: Path, keep: int, prefix: str = "checkpoint") -> None:
    if keep <= 0:
        return
    files = sorted(p for p in checkpoint_dir.glob(f"{prefix}_step*.pth") if re.search(r"_step\d{9}\.pth$", p.name))
    for p in files[:-keep]:
        with contextlib.suppress(OSError):
            p.unlink()


def publish_copy(src: Path, dst: Path) -> Path:
    """Make ``dst`` the same file as ``src`` (a hard link, so ``latest.pth`` costs no disk), atomically.

    Falls back to a copy where the filesystem has no hard links. Pruning ``src`` later leaves ``dst`` intact.
    """
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return dst


def save_model_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                          step: int, epoch: int, train_state: dict | None = None) -> Path:
    """Upstream layout (+ ``train_state`` for exact resumption); atomic (temp + rename)."""
    extra = {"train_state": train_state} if train_state is not None else None
    return save_checkpoint(model, path, optimizer_state=optimizer.state_dict() if optimizer else None,
                           global_step=step, global_epoch=epoch, extra=extra)


class Amp:
    """Mixed precision on CUDA (bf16 where supported, else fp16 with a GradScaler); no-op elsewhere."""

    def __init__(self, device: torch.device, enabled: bool = True) -> None:
        self.enabled = enabled and device.type == "cuda"
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)
        self.device_type = device.type

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


class RunLog:
    """Scalars to TensorBoard (when installed) and to ``metrics.jsonl``; images to TensorBoard and jpg."""

    def __init__(self, log_dir: str | Path, d: Dist, tensorboard: bool = True, start_step: int = 0) -> None:
        self.dir = Path(log_dir)
        self.active = d.is_main
        self.tb = None
        if not self.active:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._drop_after(start_step)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.dir / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed: logging to metrics.jsonl only")
        self._jsonl = open(self.dir / "metrics.jsonl", "a")  # noqa: SIM115 - open for the run, closed in close()

    def _drop_after(self, step: int) -> None:
        """A resumed run repeats the steps after its checkpoint: their old lines go, so no step appears twice."""
        path = self.dir / "metrics.jsonl"
        if not path.is_file():
            return
        lines = path.read_text().splitlines()
        keep = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= step]
        if len(keep) != len(lines):
            write_atomic(path, "".join(ln + "\n" for ln in keep))

    def scalars(self, step: int, prefix: str, values: dict[str, float]) -> None:
        if not self.active:
            return
        for k, v in values.items():
            if self.tb is not None:
                self.tb.add_scalar(f"{prefix}/{k}", v, step)
        self._jsonl.write(json.dumps({"step": step, "split": prefix, **{k: float(v) for k, v in values.items()}}) + "\n")
        self._jsonl.flush()

    def image(self, step: int, name: str, grid_bgr: np.ndarray, path: Path | None = None) -> None:
        if not self.active:
            return
        if self.tb is not None:
            self.tb.add_image(name, grid_bgr[:, :, ::-1].copy(), step, dataformats="HWC")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
            cv2.imwrite(str(tmp), grid_bgr)
            os.replace(tmp, path)

    def close(self) -> None:
        if self.active:
            if self.tb is not None:
                self.tb.close()
            self._jsonl.close()


def read_metrics(log_dir: str | Path) -> list[dict]:
    p = Path(log_dir) / "metrics.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.is_file() else []
