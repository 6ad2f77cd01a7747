"""Expert lip-sync discriminator training (``python -m train syncnet``).

Upstream's recipe (``color_syncnet_train.py``): 5-frame windows of lower halves, balanced
in/off-sync pairs from the same video, cosine similarity + BCE (chance = ln 2 = 0.693),
Adam 1e-4. Added: AdamW, AMP on CUDA, DDP, gradient accumulation, exact resume, a fixed
eval set (the same samples at every eval, so numbers are comparable), ``best.pth`` /
``latest.pth`` / ``checkpoint_step*.pth`` in upstream's checkpoint layout, and an optional
stop at a target eval loss (the usual bar is ~0.25 on real data).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from wav2lip_uhq.models import SyncNet, read_state_dict

from . import distributed as dist_
from .config import TrainLoopConfig, check_resume, to_dict
from .data import BadDataPolicy, StepSampler, SyncNetDataset, eval_indices, open_source
from .preprocess import read_filelist
from .runtime import (
    BEST,
    LATEST,
    Amp,
    RunLog,
    find_resume,
    load_training_checkpoint,
    prune_step_checkpoints,
    publish_copy,
    rng_state,
    save_model_checkpoint,
    set_rng_state,
    step_name,
)

log = logging.getLogger(__name__)


@dataclass
class SyncNetConfig(TrainLoopConfig):
    checkpoint_dir: str = "checkpoints/syncnet"
    img_size: int = field(default=96, metadata={"help": "96 (SyncNet_color) or 288 (SyncNet_color_384)"})
    width: float = field(default=1.0, metadata={"help": "channel multiplier; < 1 only for quick experiments/tests "
                                                        "(such checkpoints load with train.syncnet.load_expert)"})
    batch_size: int = field(default=64, metadata={"help": "samples per optimizer step, all processes together"})
    max_steps: int = 200_000
    eval_interval: int = 10_000
    eval_batches: int = 50
    checkpoint_interval: int = 10_000
    dtype: str = field(default="float32", metadata={"help": "float32, or float64 for numerical checks (slow; "
                                                            "e.g. DDP vs single-process equivalence)"})
    target_loss: float | None = field(default=None, metadata={"help": "stop once the eval loss is at or below"})
    min_negative_distance: int = 1


def build_syncnet(img_size: int, width: float = 1.0) -> SyncNet:
    """The upstream architecture, or a uniformly narrowed copy (``width`` < 1) for fast smoke runs."""
    if width == 1.0:
        return SyncNet(img_size)
    from dataclasses import replace

    from wav2lip_uhq.models.specs import SYNCNET_SPECS

    spec = SYNCNET_SPECS[img_size]

    def narrow(layers):
        return tuple(replace(layer, cout=max(4, round(layer.cout * width))) for layer in layers)

    face, audio = narrow(spec.face), narrow(spec.audio)
    return SyncNet(spec=replace(spec, face=face, audio=audio, embedding=face[-1].cout))


def load_expert(path: str | Path, device: str | torch.device = "cpu") -> SyncNet:
    """A trained expert in eval mode: any checkpoint the engine loads, or a narrowed one from this trainer."""
    from wav2lip_uhq.errors import CheckpointError
    from wav2lip_uhq.models import load_model

    try:
        return load_model(path, device, kind="syncnet")
    except CheckpointError:
        ck = torch.load(str(path), map_location="cpu", weights_only=True)
        conf = (ck.get("train_state") or {}).get("config") if isinstance(ck, dict) else None
        if not conf or "width" not in conf:
            raise
        model = build_syncnet(int(conf["img_size"]), float(conf["width"]))
        model.load_state_dict({k.removeprefix("module."): v for k, v in ck["state_dict"].items()})
        return model.eval().to(device)


def _optimizer(params, cfg) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay or 1e-2)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adam, adamw or sgd)")


def _loader(dataset, micro: int, sampler, workers: int, device: torch.device):
    return DataLoader(dataset, batch_size=micro, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)


def _dtype(name: str) -> torch.dtype:
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {name!r}")
    return getattr(torch, name)


def _micro_batch(batch: int, accum: int, world: int) -> int:
    if batch % (accum * world):
        raise ValueError(f"batch_size {batch} must be divisible by accum {accum} x processes {world}")
    return batch // (accum * world)


@torch.no_grad()
def evaluate(model: SyncNet, dataset: SyncNetDataset, micro: int, batches: int, d: dist_.Dist, amp: Amp,
             dtype: torch.dtype = torch.float32, batch: int | None = None) -> float:
    """Mean BCE over ``batches`` x ``batch`` (the global batch size) fixed, balanced val samples
    (upstream's eval metric); the same samples whatever the number of processes or accumulation."""
    model.eval()
    total = count = 0.0
    for idx in eval_indices(batches, batch or micro * d.world, d.rank, d.world, micro):
        items = [dataset[i] for i in idx]
        x, mel, y = (torch.stack(t).to(d.device, dtype) for t in zip(*items))
        with amp.autocast():
            a, v = model(mel, x)
        loss = SyncNet.sync_loss(a.float(), v.float(), y)
        total += float(loss) * len(idx)
        count += len(idx)
    total, count = dist_.all_reduce_sum([total, count], d)
    return total / max(count, 1)


@torch.enable_grad()  # the engine's inference may have switched grad mode off process-wide
def train(cfg: SyncNetConfig) -> dict:
    d = dist_.setup(cfg.device)
    torch.manual_seed(cfg.seed)
    ckdir = Path(cfg.checkpoint_dir)
    ckdir.mkdir(parents=True, exist_ok=True)
    micro = _micro_batch(cfg.batch_size, cfg.accum, d.world)

    train_entries = read_filelist(cfg.train_list, "--train-list")
    val_entries = read_filelist(cfg.val_list, "--val-list")
    policy = BadDataPolicy(max_redraws=cfg.max_redraws)
    train_ds = SyncNetDataset(open_source(cfg.data_root, cfg.cache, train_entries, cfg.img_size), cfg.seed, policy,
                              cfg.min_negative_distance)
    val_ds = SyncNetDataset(open_source(cfg.data_root, cfg.cache, val_entries, cfg.img_size), 10_007, policy,
                            cfg.min_negative_distance)

    dtype = _dtype(cfg.dtype)
    model = build_syncnet(cfg.img_size, cfg.width).to(d.device, dtype)
    amp = Amp(d.device, cfg.amp and dtype == torch.float32)
    step, best, ck = 0, math.inf, None
    resume = find_resume(ckdir) if cfg.resume == "auto" else (None if cfg.resume == "none" else Path(cfg.resume))
    if resume is not None:
        ck = load_training_checkpoint(resume)
        check_resume((ck.get("train_state") or {}).get("config"), cfg, resume)
        model.load_state_dict({k.removeprefix("module."): v for k, v in ck["state_dict"].items()})
    elif cfg.init_checkpoint:
        model.load_state_dict(read_state_dict(cfg.init_checkpoint))
        log.info("initialised from %s", cfg.init_checkpoint)
    # wrap (BatchNorm conversion creates new parameters) before the optimizer sees them
    net = dist_.wrap(model, d, cfg.sync_bn)
    optimizer = _optimizer(model.parameters(), cfg)
    if ck is not None:
        if ck.get("optimizer"):
            optimizer.load_state_dict(ck["optimizer"])
        step = int(ck.get("global_step", 0))
        ts = ck.get("train_state") or {}
        best = float(ts.get("best", math.inf))
        set_rng_state(ts.get("rng"))
        if ts.get("scaler"):
            amp.scaler.load_state_dict(ts["scaler"])
        log.info("resumed from %s at step %d", resume, step)

    sampler = StepSampler(micro, cfg.accum, d.rank, d.world, start_step=step)
    loader = iter(_loader(train_ds, micro, sampler, cfg.num_workers, d.device))
    runlog = RunLog(ckdir / "logs", d, cfg.tensorboard, start_step=step)
    epoch_size = max(1, len(train_ds.source.entries))

    def train_state() -> dict:
        return {"best": float(best), "rng": rng_state(), "scaler": amp.scaler.state_dict(), "config": to_dict(cfg),
                "kind": "syncnet"}

    def save(path: Path) -> None:
        if d.is_main:
            save_model_checkpoint(path, model, optimizer, step, step * cfg.batch_size // epoch_size, train_state())

    last_eval = None
    t0, seen, running = time.time(), 0, 0.0
    try:
        while step < cfg.max_steps:
            net.train()
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for _ in range(cfg.accum):
                x, mel, y = (t.to(d.device, dtype, non_blocking=True) for t in next(loader))
                with amp.autocast():
                    a, v = net(mel, x)
                loss = SyncNet.sync_loss(a.float(), v.float(), y)
                amp.scaler.scale(loss / cfg.accum).backward()
                step_loss += loss.item() / cfg.accum
            amp.scaler.step(optimizer)
            amp.scaler.update()
            step += 1
            seen += micro * cfg.accum * d.world
            running += step_loss
            if step % cfg.log_interval == 0 or step == 1:
                n = 1 if step == 1 else cfg.log_interval
                rate = seen / max(time.time() - t0, 1e-9)
                runlog.scalars(step, "train", {"loss": running / n, "samples_per_s": rate})
                log.info("step %d  loss %.4f  %.1f samples/s", step, running / n, rate)
                running, seen, t0 = 0.0, 0, time.time()
            new_best = False
            if step % cfg.eval_interval == 0 or step == cfg.max_steps:
                last_eval = evaluate(model, val_ds, micro, cfg.eval_batches, d, amp, dtype, cfg.batch_size)
                runlog.scalars(step, "eval", {"loss": last_eval})
                log.info("step %d  eval loss %.4f (chance 0.693)", step, last_eval)
                if last_eval < best:
                    best, new_best = last_eval, True
            checkpoint_now = step % cfg.checkpoint_interval == 0 or step == cfg.max_steps
            if new_best and not checkpoint_now:
                save(ckdir / BEST)
            if checkpoint_now:
                save(ckdir / step_name(step))
                if d.is_main:  # latest (and a new best) are links to the step file, not copies
                    publish_copy(ckdir / step_name(step), ckdir / LATEST)
                    if new_best:
                        publish_copy(ckdir / step_name(step), ckdir / BEST)
                    prune_step_checkpoints(ckdir, cfg.keep_checkpoints)
            if cfg.target_loss is not None and last_eval is not None and last_eval <= cfg.target_loss:
                log.info("eval loss %.4f reached the target %.4f: stopping", last_eval, cfg.target_loss)
                save(ckdir / LATEST)
                break
            dist_.barrier(d) if step % cfg.checkpoint_interval == 0 else None
    finally:
        runlog.close()
        dist_.cleanup(d)
    return {"step": step, "eval_loss": last_eval, "best": best, "checkpoint_dir": str(ckdir)}
