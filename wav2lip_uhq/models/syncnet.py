"""The expert lip-sync discriminator (SyncNet_color at 96 px, SyncNet_color_384 for 288)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .specs import SYNCNET_SPECS, SyncNetSpec, build_layers


class SyncNet(nn.Module):
    """``forward(audio, face) -> (audio_emb, face_emb)``, each L2-normalised.

    face: (B, 15, S/2, S) = 5 consecutive BGR lower halves stacked on channels;
    audio: (B, 1, 80, 16). Embeddings are non-negative, so their cosine lies in [0, 1].
    """

    def __init__(self, img_size: int = 96, spec: SyncNetSpec | None = None) -> None:
        super().__init__()
        spec = spec or SYNCNET_SPECS[img_size]
        self.img_size = spec.img_size
        self.embedding_dim = spec.embedding
        self.face_encoder = nn.Sequential(*build_layers(15, spec.face))
        self.audio_encoder = nn.Sequential(*build_layers(1, spec.audio))

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor):
        face = self.face_encoder(face_sequences).flatten(1)
        audio = self.audio_encoder(audio_sequences).flatten(1)
        return F.normalize(audio, p=2, dim=1), F.normalize(face, p=2, dim=1)

    @staticmethod
    def sync_loss(audio_emb: torch.Tensor, face_emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Upstream's loss: BCE of the cosine similarity against in-sync (1) / off-sync (0)."""
        cos = F.cosine_similarity(audio_emb, face_emb).unsqueeze(1)
        return F.binary_cross_entropy(cos, target.view(-1, 1).to(cos.dtype))
