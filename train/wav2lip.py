"""Generator training (``python -m train wav2lip``), with or without the visual-quality GAN.

Per step (upstream's ``wav2lip_train.py`` / ``hq_wav2lip_train.py``)::

    g = G(indiv_mels, [masked target | reference])
    L = sync_wt * sync + disc_wt * perceptual + perceptual_wt * vgg + (1 - sync_wt - disc_wt - perceptual_wt) * L1
    (with --disc) D: BCE(D(gt), 1) + BCE(D(g.detach()), 0)

Differences from upstream, each deliberate:

* The generator's adversarial term runs through D with D's parameters frozen, so D's update holds
  D's own loss only (upstream zeroes D's gradients between the phases to the same end).

* The frozen expert SyncNet runs in **eval mode** (upstream left it in train mode, so its
  BatchNorm used batch statistics and its running stats drifted, Wav2Lip#482). Its
  weights never change.
* ``sync_wt`` follows a configurable rule whose state is saved in the checkpoint (upstream
  forgot the switch on resume): ``upstream`` (0 until an eval sync loss < ``sync_threshold``,
  then ``sync_wt``), ``constant``, or ``step:N`` (on from step N).
* Mel alignment: generated frame f gets the window starting at frame ``f + mel_offset``
  (default 0 = the engine's inference alignment; upstream trained with -1).
* At 192/256 px the expert may be a 96 px SyncNet: the generated lower halves are resized
  to the expert's input size (``F.interpolate``, antialiased) before the sync loss.
* Optional VGG perceptual loss when a torchvision VGG16 weights file is given (offline).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from wav2lip_uhq.models import SyncNet, Wav2Lip, Wav2LipDiscQual, read_state_dict

from . import distributed as dist_
from .config import TrainLoopConfig, check_resume, to_dict
from .data import BadDataPolicy, StepSampler, Wav2LipDataset, eval_indices, open_source
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
from .syncnet import _micro_batch, _optimizer, load_expert

log = logging.getLogger(__name__)


@dataclass
class Wav2LipConfig(TrainLoopConfig):
    checkpoint_dir: str = "checkpoints/wav2lip"
    syncnet_checkpoint: str | None = field(default=None, metadata={"help": "trained expert (required if sync_wt > 0)"})
    img_size: int = field(default=96, metadata={"help": "96, 192, 256 or 288"})
    width: float = field(default=1.0, metadata={"help": "channel multiplier of the generator's face encoder/decoder "
                                                        "and of the discriminator; < 1 only for quick experiments "
                                                        "and tests (the engine loads width 1 only)"})
    batch_size: int = 16
    disc: bool = field(default=False, metadata={"help": "train with the visual-quality discriminator (hq)"})
    disc_lr: float = 1e-4
    disc_wt: float = 0.07
    sync_wt: float | None = field(default=None, metadata={"help": "sync weight once on (0.01; 0.03 with --disc)"})
    sync_schedule: str = field(default="upstream", metadata={"help": "upstream | constant | step:N"})
    sync_threshold: float = 0.75
    perceptual_wt: float = 0.0
    vgg_weights: str | None = field(default=None, metadata={"help": "torchvision vgg16 state_dict for perceptual loss"})
    mel_offset: int = 0
    max_steps: int = 300_000
    eval_interval: int = 3000
    eval_batches: int = 20
    checkpoint_interval: int = 3000
    sample_interval: int = 3000
    init_disc_checkpoint: str | None = None


class SyncSchedule:
    """When the sync loss joins the objective; its state is saved with the checkpoint."""

    def __init__(self, rule: str, weight: float, threshold: float) -> None:
        self.rule, self.weight, self.threshold = rule, weight, threshold
        self.on = rule == "constant"
        if rule.startswith("step:"):
            self.switch_step = int(rule.split(":", 1)[1])
        elif rule not in ("upstream", "constant"):
            raise ValueError(f"unknown sync_schedule {rule!r} (upstream | constant | step:N)")

    def value(self, step: int) -> float:
        if self.rule.startswith("step:") and step >= self.switch_step:
            self.on = True
        return self.weight if self.on else 0.0

    def after_eval(self, eval_sync: float) -> None:
        if self.rule == "upstream" and not self.on and eval_sync < self.threshold:
            log.info("eval sync loss %.4f < %.2f: sync weight now %.3f", eval_sync, self.threshold, self.weight)
            self.on = True

    def state_dict(self) -> dict:
        return {"rule": self.rule, "on": self.on}

    def load_state_dict(self, state: dict) -> None:
        self.on = bool(state.get("on", self.on))


def build_generator(img_size: int, width: float = 1.0) -> Wav2Lip:
    """The upstream generator, or one whose face encoder and decoder are uniformly narrowed (``width`` < 1)
    for fast experiments; the audio encoder keeps its size."""
    if width == 1.0:
        return Wav2Lip(img_size)
    from dataclasses import replace

    from wav2lip_uhq.models.specs import GENERATOR_SPECS

    spec = GENERATOR_SPECS[img_size]
    encoder = tuple(tuple(replace(layer, cout=max(4, round(layer.cout * width))) for layer in block)
                    for block in spec.encoder)
    decoder = tuple(max(4, round(c * width)) for c in spec.decoder)
    return Wav2Lip(spec=replace(spec, encoder=encoder, decoder=decoder))


def build_discriminator(img_size: int, width: float = 1.0) -> Wav2LipDiscQual:
    """The visual-quality discriminator, narrowed like the generator when ``width`` < 1."""
    if width == 1.0:
        return Wav2LipDiscQual(img_size)
    from dataclasses import replace

    from wav2lip_uhq.models.specs import DISC_SPECS

    spec = DISC_SPECS[img_size]
    blocks = tuple(tuple((max(4, round(c * width)), k, st, pad) for c, k, st, pad in block) for block in spec.blocks)
    return Wav2LipDiscQual(spec=replace(spec, blocks=blocks))


@dataclass
class Nets:
    """What one generator step touches: the generator (``net``, DDP-wrapped or not), the frozen expert,
    the discriminator (``disc`` plain, ``dnet`` wrapped) and their mixed-precision scalers."""

    net: nn.Module
    amp: Amp
    expert: SyncNet | None = None
    disc: nn.Module | None = None
    dnet: nn.Module | None = None
    disc_amp: Amp | None = None
    vgg: nn.Module | None = None


def backward_step(nets: Nets, batches, sync_wt: float, disc_wt: float, perceptual_wt: float) -> dict:
    """Fill the gradients of one optimizer step (``len(batches)`` micro-batches): G's from its loss,
    D's from D's own loss only.

    The generator's adversarial term runs through D with D's parameters frozen, so it reaches G
    and never D (upstream zeroes D's gradients between the two phases to the same end)."""
    accum = len(batches)
    logs = {"l1": 0.0, "sync": 0.0, "perceptual": 0.0, "loss": 0.0, "disc_real": 0.0, "disc_fake": 0.0}
    for x, mels, mel, y in batches:
        with nets.amp.autocast():
            g = nets.net(mels, x)
        g = g.float()
        l1 = F.l1_loss(g, y)
        loss = (1.0 - sync_wt - disc_wt - perceptual_wt) * l1
        if sync_wt > 0:
            s_loss = sync_loss(nets.expert, mel, g)
            loss = loss + sync_wt * s_loss
            logs["sync"] += s_loss.item() / accum
        if nets.disc is not None:
            nets.disc.requires_grad_(False)
            try:  # plain module: no DDP reducer waits for D gradients that never come
                with nets.amp.autocast():
                    pred = nets.disc(g)
            finally:
                nets.disc.requires_grad_(True)
            perc = F.binary_cross_entropy(pred.float(), torch.ones_like(pred, dtype=torch.float32))
            loss = loss + disc_wt * perc
            logs["perceptual"] += perc.item() / accum
        if nets.vgg is not None:
            loss = loss + perceptual_wt * nets.vgg(g, y)
        nets.amp.scaler.scale(loss / accum).backward()
        logs["l1"] += l1.item() / accum
        logs["loss"] += loss.item() / accum
        if nets.dnet is not None:
            with nets.disc_amp.autocast():
                pr, pf = nets.dnet(y), nets.dnet(g.detach())
            d_real = F.binary_cross_entropy(pr.float(), torch.ones_like(pr, dtype=torch.float32))
            d_fake = F.binary_cross_entropy(pf.float(), torch.zeros_like(pf, dtype=torch.float32))
            nets.disc_amp.scaler.scale((d_real + d_fake) / accum).backward()
            logs["disc_real"] += d_real.item() / accum
            logs["disc_fake"] += d_fake.item() / accum
    logs["_last"] = (x, g, y)
    return logs


class VGGPerceptual(nn.Module):
    """L1 between VGG16 relu1_2..relu3_3 features (ImageNet-normalised RGB), from a local weights file."""

    def __init__(self, weights: str) -> None:
        super().__init__()
        from torchvision.models import vgg16

        vgg = vgg16()
        vgg.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.slices = nn.ModuleList([vgg.features[:4], vgg.features[4:9], vgg.features[9:16]]).eval()
        for p in self.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def prep(t):  # (B,3,T,S,S) BGR -> (B*T,3,S,S) RGB normalised
            t = t.transpose(1, 2).flatten(0, 1).flip(1)
            return (t - self.mean) / self.std

        a, b, loss = prep(g), prep(y), 0.0
        for s in self.slices:
            a, b = s(a), s(b)
            loss = loss + F.l1_loss(a, b)
        return loss


def sync_loss(expert: SyncNet, mel: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """BCE(cos(expert(mel), expert(lower halves of g)), 1); g (B,3,T,S,S)."""
    s = g.size(-1)
    lower = g[:, :, :, s // 2 :]  # (B,3,T,S/2,S)
    x = torch.cat([lower[:, :, t] for t in range(lower.size(2))], dim=1)  # (B,3T,S/2,S)
    if expert.img_size != s:
        e = expert.img_size
        x = F.interpolate(x, size=(e // 2, e), mode="bilinear", align_corners=False, antialias=True)
    a, v = expert(mel, x)
    return SyncNet.sync_loss(a.float(), v.float(), torch.ones(len(a), 1, device=a.device))


def sample_grid(x: torch.Tensor, g: torch.Tensor, y: torch.Tensor, max_items: int = 4) -> np.ndarray:
    """Rows = samples, columns = [reference | masked input | generated | ground truth] per frame. BGR uint8."""
    def img(t):  # (3,S,S) -> (S,S,3)
        return (t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)

    rows = []
    for b in range(min(max_items, x.size(0))):
        cols = []
        for t in range(x.size(2)):
            cols.append(np.concatenate([img(x[b, 3:, t]), img(x[b, :3, t]), img(g[b, :, t]), img(y[b, :, t])], 0))
        rows.append(np.concatenate(cols, 1))
    return np.concatenate(rows, 0)


@torch.enable_grad()  # the engine's inference may have switched grad mode off process-wide
def train(cfg: Wav2LipConfig) -> dict:
    d = dist_.setup(cfg.device)
    torch.manual_seed(cfg.seed)
    ckdir = Path(cfg.checkpoint_dir)
    ckdir.mkdir(parents=True, exist_ok=True)
    micro = _micro_batch(cfg.batch_size, cfg.accum, d.world)
    sync_weight = cfg.sync_wt if cfg.sync_wt is not None else (0.03 if cfg.disc else 0.01)
    if sync_weight + (cfg.disc_wt if cfg.disc else 0) + cfg.perceptual_wt >= 1:
        raise ValueError("sync_wt + disc_wt + perceptual_wt must be below 1 (the rest weighs L1)")

    policy = BadDataPolicy(max_redraws=cfg.max_redraws)
    train_entries = read_filelist(cfg.train_list, "--train-list")
    val_entries = read_filelist(cfg.val_list, "--val-list")
    train_ds = Wav2LipDataset(open_source(cfg.data_root, cfg.cache, train_entries, cfg.img_size),
                              cfg.seed, policy, cfg.mel_offset)
    val_ds = Wav2LipDataset(open_source(cfg.data_root, cfg.cache, val_entries, cfg.img_size),
                            10_007, policy, cfg.mel_offset)

    expert = None
    if cfg.syncnet_checkpoint:
        expert = load_expert(cfg.syncnet_checkpoint, d.device)  # eval mode (BN frozen)
        for p in expert.parameters():
            p.requires_grad_(False)
    elif sync_weight > 0 and cfg.sync_schedule != "upstream":
        raise ValueError("a sync weight needs --syncnet-checkpoint (the trained expert)")
    schedule = SyncSchedule(cfg.sync_schedule, sync_weight if expert is not None else 0.0, cfg.sync_threshold)

    model = build_generator(cfg.img_size, cfg.width).to(d.device)
    disc = disc_opt = None
    if cfg.disc:
        disc = build_discriminator(cfg.img_size, cfg.width).to(d.device)
    step, best, ck = 0, math.inf, None
    resume = find_resume(ckdir) if cfg.resume == "auto" else (None if cfg.resume == "none" else Path(cfg.resume))
    if resume is not None:
        ck = load_training_checkpoint(resume)
        check_resume((ck.get("train_state") or {}).get("config"), cfg, resume)
        model.load_state_dict({k.removeprefix("module."): v for k, v in ck["state_dict"].items()})
        ts = ck.get("train_state") or {}
        if disc is not None and ts.get("disc_state_dict") is not None:
            disc.load_state_dict(ts["disc_state_dict"])
    else:
        if cfg.init_checkpoint:
            model.load_state_dict(read_state_dict(cfg.init_checkpoint))
        if disc is not None and cfg.init_disc_checkpoint:
            disc.load_state_dict(read_state_dict(cfg.init_disc_checkpoint))
    # wrap (BatchNorm conversion creates new parameters) before the optimizers see them
    net = dist_.wrap(model, d, cfg.sync_bn)
    dnet = dist_.wrap(disc, d, cfg.sync_bn) if disc is not None else None
    optimizer = _optimizer(model.parameters(), cfg)
    if cfg.disc:  # hq_wav2lip_train's betas
        for group in optimizer.param_groups:
            group["betas"] = (0.5, 0.999)
        disc_opt = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.999))
    vgg = VGGPerceptual(cfg.vgg_weights).to(d.device) if cfg.perceptual_wt > 0 else None
    if cfg.perceptual_wt > 0 and not cfg.vgg_weights:
        raise ValueError("perceptual_wt > 0 needs --vgg-weights (a torchvision vgg16 state_dict file)")
    amp = Amp(d.device, cfg.amp)
    disc_amp = Amp(d.device, cfg.amp)
    nets = Nets(net, amp, expert, disc, dnet, disc_amp, vgg)

    if ck is not None:
        if ck.get("optimizer"):
            optimizer.load_state_dict(ck["optimizer"])
        step = int(ck.get("global_step", 0))
        ts = ck.get("train_state") or {}
        best = float(ts.get("best", math.inf))
        schedule.load_state_dict(ts.get("sync_schedule", {}))
        set_rng_state(ts.get("rng"))
        if ts.get("scaler"):
            amp.scaler.load_state_dict(ts["scaler"])
        if disc is not None and ts.get("disc_optimizer") is not None:
            disc_opt.load_state_dict(ts["disc_optimizer"])
            if ts.get("disc_scaler"):
                disc_amp.scaler.load_state_dict(ts["disc_scaler"])
        log.info("resumed from %s at step %d (sync weight %s)", resume, step, "on" if schedule.on else "off")

    sampler = StepSampler(micro, cfg.accum, d.rank, d.world, start_step=step)
    loader = iter(DataLoader(train_ds, batch_size=micro, sampler=sampler, num_workers=cfg.num_workers,
                             pin_memory=d.device.type == "cuda", persistent_workers=cfg.num_workers > 0,
                             prefetch_factor=4 if cfg.num_workers > 0 else None))
    runlog = RunLog(ckdir / "logs", d, cfg.tensorboard, start_step=step)
    epoch_size = max(1, len(train_ds.source.entries))

    def train_state() -> dict:
        st = {"best": float(best), "rng": rng_state(), "scaler": amp.scaler.state_dict(), "config": to_dict(cfg),
              "sync_schedule": schedule.state_dict(), "kind": "wav2lip"}
        if disc is not None:
            st.update(disc_state_dict={k: v.detach().cpu() for k, v in disc.state_dict().items()},
                      disc_optimizer=disc_opt.state_dict(), disc_scaler=disc_amp.scaler.state_dict())
        return st

    def save(path: Path, with_disc_file: bool = False) -> None:
        if not d.is_main:
            return
        epoch = step * cfg.batch_size // epoch_size
        if with_disc_file and disc is not None:  # upstream's separate discriminator file
            save_model_checkpoint(path.with_name("disc_" + path.name), disc, disc_opt, step, epoch)
        save_model_checkpoint(path, model, optimizer, step, epoch, train_state())

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        model.eval()
        if disc is not None:
            disc.eval()
        sums = np.zeros(6)
        for idx in eval_indices(cfg.eval_batches, cfg.batch_size, d.rank, d.world, micro):
            x, mels, mel, y = (torch.stack(t).to(d.device) for t in zip(*[val_ds[i] for i in idx]))
            with amp.autocast():
                g = model(mels, x)
            g = g.float()
            vals = [F.l1_loss(g, y).item(), sync_loss(expert, mel, g).item() if expert is not None else 0.0]
            if disc is not None:
                pf, pr = disc(g).float(), disc(y).float()
                vals += [F.binary_cross_entropy(pf, torch.ones_like(pf)).item(),
                         F.binary_cross_entropy(pf, torch.zeros_like(pf)).item(),
                         F.binary_cross_entropy(pr, torch.ones_like(pr)).item()]
            else:
                vals += [0.0, 0.0, 0.0]
            sums += np.array(vals + [1.0]) * len(idx)
        sums = np.array(dist_.all_reduce_sum(sums.tolist(), d))
        n = max(sums[5], 1)
        out = {"l1": float(sums[0] / n), "sync": float(sums[1] / n)}
        if disc is not None:
            out.update(perceptual=float(sums[2] / n), fake=float(sums[3] / n), real=float(sums[4] / n))
        return out

    last_eval: dict[str, float] = {}
    t0, seen, running = time.time(), 0, {}
    try:
        while step < cfg.max_steps:
            net.train()
            if dnet is not None:
                dnet.train()
            sync_wt = schedule.value(step)
            disc_wt = cfg.disc_wt if disc is not None else 0.0
            optimizer.zero_grad(set_to_none=True)
            if disc_opt is not None:
                disc_opt.zero_grad(set_to_none=True)
            batches = [tuple(t.to(d.device, non_blocking=True) for t in next(loader)) for _ in range(cfg.accum)]
            logs = backward_step(nets, batches, sync_wt, disc_wt, cfg.perceptual_wt)
            x, g, y = logs.pop("_last")
            amp.scaler.step(optimizer)
            amp.scaler.update()
            if disc_opt is not None:
                disc_amp.scaler.step(disc_opt)
                disc_amp.scaler.update()
            step += 1
            seen += micro * cfg.accum * d.world
            for k, v in logs.items():
                running[k] = running.get(k, 0.0) + v
            if step % cfg.log_interval == 0 or step == 1:
                n = 1 if step == 1 else cfg.log_interval
                vals = {k: v / n for k, v in running.items()}
                vals["sync_wt"] = sync_wt
                vals["samples_per_s"] = seen / max(time.time() - t0, 1e-9)
                runlog.scalars(step, "train", vals)
                log.info("step %d  " + "  ".join(f"{k} {v:.4f}" for k, v in vals.items()), step)
                running, seen, t0 = {}, 0, time.time()
            if d.is_main and cfg.sample_interval and step % cfg.sample_interval == 0:
                runlog.image(step, "samples", sample_grid(x, g, y), ckdir / "samples" / f"samples_step{step:09d}.jpg")
            new_best = False
            if step % cfg.eval_interval == 0 or step == cfg.max_steps:
                last_eval = evaluate()
                runlog.scalars(step, "eval", last_eval)
                log.info("step %d  eval " + "  ".join(f"{k} {v:.4f}" for k, v in last_eval.items()), step)
                if expert is not None:
                    schedule.after_eval(last_eval["sync"])
                score = last_eval["sync"] if (expert is not None and schedule.on) else last_eval["l1"]
                if score < best:
                    best, new_best = score, True
            checkpoint_now = step % cfg.checkpoint_interval == 0 or step == cfg.max_steps
            if new_best and not checkpoint_now:
                save(ckdir / BEST)
            if checkpoint_now:
                save(ckdir / step_name(step), with_disc_file=True)
                if d.is_main:  # latest (and a new best) are links to the step file, not copies
                    publish_copy(ckdir / step_name(step), ckdir / LATEST)
                    if new_best:
                        publish_copy(ckdir / step_name(step), ckdir / BEST)
                    prune_step_checkpoints(ckdir, cfg.keep_checkpoints)
                    prune_step_checkpoints(ckdir, cfg.keep_checkpoints, prefix="disc_checkpoint")
    finally:
        runlog.close()
        dist_.cleanup(d)
    return {"step": step, "eval": last_eval, "best": best, "sync_on": schedule.on, "checkpoint_dir": str(ckdir)}
