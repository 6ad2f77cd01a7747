"""Inference-only speed-ups that keep the model's function: BatchNorm folded into the convs.

The folded model has other state_dict keys, so it is never saved; load checkpoints first,
then optimise.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def _fold(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    if isinstance(conv, nn.ConvTranspose2d):  # weight [cin, cout, k, k]
        conv.weight.mul_(scale.view(1, -1, 1, 1))
    else:  # weight [cout, cin, k, k]
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
    conv.bias = nn.Parameter(bias * scale + shift)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``conv_block = Sequential(conv, BatchNorm2d)`` in place (eval-mode maths)."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    for module in model.modules():
        block = getattr(module, "conv_block", None)
        if isinstance(block, nn.Sequential) and len(block) == 2 and isinstance(block[1], nn.BatchNorm2d):
            _fold(block[0], block[1])
            module.conv_block = nn.Sequential(block[0])
    return model
