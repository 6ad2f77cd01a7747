"""Deterministic "fill rule" weights, as documented with the upstream reference outputs.

Used to prove checkpoint compatibility against the goldens and to build test checkpoints
in the released layout without downloading anything.
"""

from __future__ import annotations

import math
import zlib
from typing import Mapping

import torch


def fill_rule_state_dict(shapes: Mapping[str, tuple[int, ...]] | torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights for every entry, seeded by ``crc32(name)`` (see shared/reference/README.md)."""
    if isinstance(shapes, torch.nn.Module):
        shapes = {k: tuple(v.shape) for k, v in shapes.state_dict().items()}
    names = set(shapes)
    out: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        shape = tuple(shape)
        if name.endswith("num_batches_tracked"):
            out[name] = torch.zeros(shape, dtype=torch.int64)
        elif name.endswith("running_var"):
            out[name] = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("running_mean"):
            out[name] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            t = 0.1 * torch.randn(shape, generator=g)
            if name.endswith(".weight") and name[:-6] + "running_mean" in names:
                t = t + 1.0
            out[name] = t
        else:
            out[name] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
    return out
