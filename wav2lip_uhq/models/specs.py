"""Layer specifications of the Wav2Lip model family.

A spec is data (channels, kernel, stride, padding, residual) so that every resolution
(96 upstream, 288 of the 288x288 fork, and our own 192/256 training configurations)
is built by the same code and the state_dict layout follows from the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from torch import nn

from .blocks import Conv2d


@dataclass(frozen=True)
class Layer:
    """One Conv2d block: output channels, kernel, stride, padding, residual."""

    cout: int
    kernel: int | tuple[int, int] = 3
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 1
    residual: bool = False
    act: str = "relu"


def with_activation(layers: Sequence[Layer], act: str, keep_last: int) -> tuple[Layer, ...]:
    """All but the last ``keep_last`` layers switched to ``act`` (the 288 fork's LeakyReLU layers)."""
    cut = len(layers) - keep_last
    return tuple(replace(layer, act=act) if i < cut else layer for i, layer in enumerate(layers))


def level(cout: int, residuals: int, kernel: int = 3, stride=2, padding: int = 1) -> tuple[Layer, ...]:
    """A downsampling conv followed by ``residuals`` same-width residual blocks."""
    return (Layer(cout, kernel, stride, padding),) + tuple(
        Layer(cout, 3, 1, 1, residual=True) for _ in range(residuals)
    )


def squeeze(cout: int = 512) -> tuple[Layer, ...]:
    """3x3 valid conv + 1x1 conv: the encoders' tail that ends at 1x1 (from 3x3)."""
    return (Layer(cout, 3, 1, 0), Layer(cout, 1, 1, 0))


def build_layers(cin: int, layers: Sequence[Layer]) -> list[nn.Module]:
    modules: list[nn.Module] = []
    for spec in layers:
        modules.append(
            Conv2d(
                cin, spec.cout, spec.kernel, spec.stride, spec.padding, residual=spec.residual, act=spec.act
            )
        )
        cin = spec.cout
    return modules


def conv_out(size: tuple[int, int], layer: Layer) -> tuple[int, int]:
    def pair(v):
        return v if isinstance(v, tuple) else (v, v)

    k, s, p = pair(layer.kernel), pair(layer.stride), pair(layer.padding)
    return tuple((size[i] + 2 * p[i] - k[i]) // s[i] + 1 for i in range(2))  # type: ignore[return-value]


# Audio encoders over a (1, 80, 16) mel window. Indices are checkpoint key indices.
GENERATOR_AUDIO = (
    level(32, 2, stride=1)
    + level(64, 2, stride=(3, 1))
    + level(128, 2, stride=3)
    + level(256, 1, stride=(3, 2))
    + squeeze(512)
)
SYNCNET_AUDIO_96 = (
    level(32, 2, stride=1)
    + level(64, 2, stride=(3, 1))
    + level(128, 2, stride=3)
    + level(256, 2, stride=(3, 2))
    + squeeze(512)
)
SYNCNET_AUDIO_384 = (
    level(32, 2, stride=1)
    + level(64, 2, stride=(3, 1))
    + level(128, 2, stride=3)
    + level(256, 2, stride=(3, 2))
    + level(512, 2, stride=1)
    + squeeze(1024)
)


@dataclass(frozen=True)
class GeneratorSpec:
    """Face encoder blocks (each a tuple of layers) and decoder widths, deepest first."""

    img_size: int
    encoder: tuple[tuple[Layer, ...], ...]
    decoder: tuple[int, ...]

    def encoder_sizes(self) -> list[int]:
        size = (self.img_size, self.img_size)
        sizes = []
        for block in self.encoder:
            for layer in block:
                size = conv_out(size, layer)
            sizes.append(size[0])
        if sizes[-1] != 1:
            raise ValueError(f"face encoder for {self.img_size}px must end at 1x1, ends at {sizes[-1]}")
        return sizes


GENERATOR_96 = GeneratorSpec(
    96,
    (
        (Layer(16, 7, 1, 3),),
        level(32, 2),
        level(64, 3),
        level(128, 2),
        level(256, 2),
        level(512, 1),
        squeeze(512),
    ),
    (512, 512, 512, 384, 256, 128, 64),
)

GENERATOR_288 = GeneratorSpec(
    288,
    (
        (Layer(16, 7, 1, 3),),
        level(32, 1, kernel=5, padding=2),
        level(32, 2),
        level(64, 3),
        level(128, 2),
        level(256, 2),
        level(512, 1),
        squeeze(512),
        squeeze(512),
    ),
    (512, 512, 512, 512, 384, 256, 128, 64, 64),
)

# Our own higher-resolution configurations of the same family (no public weights exist).
GENERATOR_192 = GeneratorSpec(
    192,
    (
        (Layer(16, 7, 1, 3),),
        level(32, 1, kernel=5, padding=2),
        level(32, 2),
        level(64, 3),
        level(128, 2),
        level(256, 2),
        level(512, 1),
        squeeze(512),
    ),
    (512, 512, 512, 384, 256, 128, 64, 64),
)

GENERATOR_256 = GeneratorSpec(
    256,
    (
        (Layer(16, 7, 1, 3),),
        level(32, 1, kernel=5, padding=2),  # 128
        level(32, 2),  # 64
        level(64, 3),  # 32
        level(128, 2),  # 16
        level(256, 2),  # 8
        level(512, 1),  # 4
        (Layer(512, 3, 2, 1), Layer(512, 1, 1, 0)),  # 2
        (Layer(512, 2, 1, 0), Layer(512, 1, 1, 0)),  # 1
    ),
    (512, 512, 512, 512, 384, 256, 128, 64, 64),
)

GENERATOR_SPECS = {
    spec.img_size: spec for spec in (GENERATOR_96, GENERATOR_192, GENERATOR_256, GENERATOR_288)
}


@dataclass(frozen=True)
class DiscriminatorSpec:
    """Visual-quality discriminator: no-norm conv blocks over the lower half."""

    img_size: int
    blocks: tuple[tuple[tuple[int, int, object, int], ...], ...]  # (cout, kernel, stride, padding)


def _disc_level(cout: int, kernel: int, stride, padding: int):
    return ((cout, kernel, stride, padding), (cout, kernel, 1, padding))


DISC_96 = DiscriminatorSpec(
    96,
    (
        ((32, 7, 1, 3),),
        _disc_level(64, 5, (1, 2), 2),
        _disc_level(128, 5, 2, 2),
        _disc_level(256, 5, 2, 2),
        _disc_level(512, 3, 2, 1),
        _disc_level(512, 3, 2, 1),
        ((512, 3, 1, 0), (512, 1, 1, 0)),
    ),
)

DISC_288 = DiscriminatorSpec(
    288,
    (
        ((32, 7, 1, 3),),
        _disc_level(64, 5, (1, 2), 2),
        _disc_level(128, 5, 2, 2),
        _disc_level(128, 5, 2, 2),
        _disc_level(256, 5, 2, 2),
        _disc_level(256, 5, 2, 2),
        _disc_level(512, 3, 2, 1),
        _disc_level(512, 3, 2, 1),
        ((512, 3, 1, 0), (512, 1, 1, 0)),
    ),
)

DISC_192 = DiscriminatorSpec(
    192,
    (
        ((32, 7, 1, 3),),
        _disc_level(64, 5, (1, 2), 2),  # 96x96
        _disc_level(128, 5, 2, 2),  # 48
        _disc_level(128, 5, 2, 2),  # 24
        _disc_level(256, 5, 2, 2),  # 12
        _disc_level(512, 3, 2, 1),  # 6
        _disc_level(512, 3, 2, 1),  # 3
        ((512, 3, 1, 0), (512, 1, 1, 0)),
    ),
)

DISC_256 = DiscriminatorSpec(
    256,
    (
        ((32, 7, 1, 3),),
        _disc_level(64, 5, (1, 2), 2),  # 128x128
        _disc_level(128, 5, 2, 2),  # 64
        _disc_level(128, 5, 2, 2),  # 32
        _disc_level(256, 5, 2, 2),  # 16
        _disc_level(256, 5, 2, 2),  # 8
        _disc_level(512, 3, 2, 1),  # 4
        _disc_level(512, 3, 2, 1),  # 2
        ((512, 2, 1, 0), (512, 1, 1, 0)),
    ),
)

DISC_SPECS = {spec.img_size: spec for spec in (DISC_96, DISC_192, DISC_256, DISC_288)}


@dataclass(frozen=True)
class SyncNetSpec:
    """Expert lip-sync discriminator: face encoder over 5 stacked lower halves + audio encoder."""

    img_size: int
    face: tuple[Layer, ...]
    audio: tuple[Layer, ...]
    embedding: int


SYNCNET_96 = SyncNetSpec(
    96,
    (Layer(32, 7, 1, 3),)
    + level(64, 2, kernel=5, stride=(1, 2), padding=1)
    + level(128, 3)
    + level(256, 2)
    + level(512, 2)
    + (Layer(512, 3, 2, 1),)
    + squeeze(512),
    SYNCNET_AUDIO_96,
    512,
)

SYNCNET_384 = SyncNetSpec(
    288,
    with_activation(
        (Layer(16, 7, 1, 3),)
        + level(32, 2, kernel=5, stride=(1, 2), padding=1)
        + level(64, 2)
        + level(128, 2)
        + level(256, 2)
        + level(512, 2)
        + level(1024, 2)
        + (Layer(1024, 3, 2, 1),)
        + squeeze(1024),
        "leaky",
        keep_last=1,
    ),
    with_activation(SYNCNET_AUDIO_384, "leaky", keep_last=2),
    1024,
)

SYNCNET_SPECS = {96: SYNCNET_96, 288: SYNCNET_384}
