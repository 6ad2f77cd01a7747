"""The Wav2Lip generator and its visual-quality discriminator, at any spec'd resolution."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Conv2d, Conv2dTranspose, NoNormConv2d, residual_stack
from .specs import (
    DISC_SPECS,
    GENERATOR_AUDIO,
    GENERATOR_SPECS,
    DiscriminatorSpec,
    GeneratorSpec,
    build_layers,
)


def fold_time(x: torch.Tensor, time_dim: int) -> torch.Tensor:
    """(B, ..., T, ...) -> (T*B, ...), time-major, as upstream concatenates."""
    return torch.cat([x.select(time_dim, i) for i in range(x.size(time_dim))], dim=0)


class Wav2Lip(nn.Module):
    """Generator: (mel window, masked target + reference face) -> lower-face image in (0, 1), BGR.

    ``forward(audio, face)``: audio (B,1,80,16) or (B,T,1,80,16); face (B,6,S,S) or (B,6,T,S,S).
    """

    def __init__(self, img_size: int = 96, spec: GeneratorSpec | None = None) -> None:
        super().__init__()
        spec = spec or GENERATOR_SPECS[img_size]
        self.img_size = spec.img_size
        sizes = spec.encoder_sizes()

        blocks, cin, skip_channels = [], 6, []
        for block in spec.encoder:
            blocks.append(nn.Sequential(*build_layers(cin, block)))
            cin = block[-1].cout
            skip_channels.append(cin)
        self.face_encoder_blocks = nn.ModuleList(blocks)

        self.audio_encoder = nn.Sequential(*build_layers(1, GENERATOR_AUDIO))
        audio_dim = GENERATOR_AUDIO[-1].cout

        decoder = [nn.Sequential(Conv2d(audio_dim, spec.decoder[0], 1, 1, 0))]
        cin = spec.decoder[0] + skip_channels[-1]
        size = 1
        for i, cout in enumerate(spec.decoder[1:], start=1):
            target = sizes[-1 - i]
            if i == 1:  # 1x1 -> kxk with a valid transposed conv
                up = Conv2dTranspose(cin, cout, target, 1, 0)
                n_res = 1
            else:
                output_padding = target - (2 * size - 1)
                if output_padding not in (0, 1):
                    raise ValueError(f"cannot upsample {size} -> {target} with a stride-2 3x3 conv")
                up = Conv2dTranspose(cin, cout, 3, 2, 1, output_padding)
                n_res = 2
            decoder.append(nn.Sequential(up, *residual_stack(cout, n_res)))
            size = target
            cin = cout + skip_channels[-1 - i]
        self.face_decoder_blocks = nn.ModuleList(decoder)

        self.output_block = nn.Sequential(Conv2d(cin, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor) -> torch.Tensor:
        batch = audio_sequences.size(0)
        sequence = face_sequences.dim() > 4
        if sequence:
            audio_sequences = fold_time(audio_sequences, 1)
            face_sequences = fold_time(face_sequences, 2)

        feats = []
        x = face_sequences
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)

        x = self.audio_encoder(audio_sequences)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), feats.pop()), dim=1)

        x = self.output_block(x)
        if sequence:
            x = torch.stack(torch.split(x, batch, dim=0), dim=2)
        return x


class Wav2LipDiscQual(nn.Module):
    """Visual-quality discriminator: probability that the lower half of each face is real."""

    def __init__(self, img_size: int = 96, spec: DiscriminatorSpec | None = None) -> None:
        super().__init__()
        spec = spec or DISC_SPECS[img_size]
        self.img_size = spec.img_size
        blocks, cin = [], 3
        for block in spec.blocks:
            layers = []
            for cout, k, s, p in block:
                layers.append(NoNormConv2d(cin, cout, k, s, p))
                cin = cout
            blocks.append(nn.Sequential(*layers))
        self.face_encoder_blocks = nn.ModuleList(blocks)
        self.binary_pred = nn.Sequential(nn.Conv2d(cin, 1, 1, 1, 0), nn.Sigmoid())

    @staticmethod
    def lower_half(faces: torch.Tensor) -> torch.Tensor:
        return faces[:, :, faces.size(2) // 2 :]

    def forward(self, face_sequences: torch.Tensor) -> torch.Tensor:
        """(B,3,T,S,S) or (B,3,S,S) -> (B*T, 1)."""
        if face_sequences.dim() > 4:
            face_sequences = fold_time(face_sequences, 2)
        x = self.lower_half(face_sequences)
        for block in self.face_encoder_blocks:
            x = block(x)
        return self.binary_pred(x).view(len(x), -1)

    def perceptual_loss(self, generated: torch.Tensor) -> torch.Tensor:
        """BCE of D(generated) against 'real': the generator's adversarial term."""
        pred = self.forward(generated)
        return nn.functional.binary_cross_entropy(pred, torch.ones_like(pred))
