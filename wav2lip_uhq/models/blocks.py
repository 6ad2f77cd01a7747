"""Convolution blocks with the parameter names of upstream Wav2Lip.

The state_dict layout (``conv_block.0`` = conv, ``conv_block.1`` = BatchNorm) is what
released checkpoints contain, so the names here are part of the file format.
"""

from __future__ import annotations

import torch
from torch import nn


class Conv2d(nn.Module):
    """Conv + BatchNorm (+ identity residual) + activation."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size,
        stride=1,
        padding=0,
        residual: bool = False,
        act: str = "relu",
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout)
        )
        self.act = _activation(act)
        self.act_ = _activation(act, inplace=True)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        if not torch.is_grad_enabled():  # inference: activate in place, no extra tensor per layer
            return self.act_(out)
        return self.act(out)


class Conv2dTranspose(nn.Module):
    """Transposed conv + BatchNorm + ReLU (the decoder's upsampling step)."""

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, output_padding=0) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding),
            nn.BatchNorm2d(cout),
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


class NoNormConv2d(nn.Module):
    """Conv + LeakyReLU(0.01) without BatchNorm (the visual-quality discriminator)."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding))
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _activation(name: str, inplace: bool = False) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace)
    if name == "leaky":
        return nn.LeakyReLU(0.2, inplace)
    raise ValueError(f"unknown activation {name!r}")


def residual_stack(channels: int, count: int) -> list[nn.Module]:
    """``count`` same-width 3x3 residual blocks."""
    return [Conv2d(channels, channels, 3, 1, 1, residual=True) for _ in range(count)]
