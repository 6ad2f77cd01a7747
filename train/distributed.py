"""Process-group setup for single process or ``torchrun`` (NCCL on CUDA, gloo on CPU)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return dev


def setup(device: str = "auto") -> Dist:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and join the group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
        log.info("rank %d/%d on %s (%s)", rank, world, dev, backend)
    return Dist(rank, world, local_rank, dev)


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over the process group (the backward of a sum is the sum of the gradients)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CPUSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are all-reduced over the process group.

    torch's SyncBatchNorm is CUDA-only; this one works with gloo (CPU runs and tests). The
    per-channel sums (x, x^2, count) are reduced in float64 with a differentiable all_reduce, so
    forward and gradients are those of one BatchNorm over the whole batch (running variance
    unbiased with the global count, as torch does). Computing in float64 makes it *more*
    accurate than torch's float32 CPU BatchNorm: on near-degenerate batches (the synthetic
    faces, all cut from one photo) torch's float32 gradients of the face encoder are ~1% off
    the float64 values while these are within 2e-5, so float32 DDP and single-process runs
    drift apart over a few large-lr steps even though both implement the same function
    (README "DDP").
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        x64 = x.double()
        count = torch.full((1,), x.numel() / x.size(1), dtype=torch.float64, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([x64.sum((0, 2, 3)), (x64 * x64).sum((0, 2, 3)), count]))
        c = x.size(1)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - m).add_(m * (var * n / (n - 1)).to(self.running_var.dtype))
        y = (x64 - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        y = y.to(x.dtype)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def convert_cpu_sync_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by :class:`CPUSyncBatchNorm2d` (same parameters and buffers)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = CPUSyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats)
            ref = next(iter(child.parameters()), child.running_mean)
            if ref is not None:  # same device and dtype (float64 runs) as the replaced layer
                new.to(ref.device, ref.dtype)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            convert_cpu_sync_bn(child)
    return module


def wrap(model: nn.Module, d: Dist, sync_bn: bool = True) -> nn.Module:
    """DDP wrapper; BatchNorm synchronised across processes so that statistics match one big batch."""
    if not d.enabled:
        return model
    if sync_bn:
        if d.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = convert_cpu_sync_bn(model)
    ids = [d.device.index] if d.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return model


def all_reduce_sum(values: list[float], d: Dist) -> list[float]:
    if not d.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
