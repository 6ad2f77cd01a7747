"""FID between two frame sets with an Inception-v3 feature extractor from a user-supplied weights file.

Nothing is downloaded. The file is a torchvision ``inception_v3`` state_dict (e.g. torchvision's
``inception_v3_google-*.pth``; loaded with ``weights_only=True``; ``AuxLogits.*`` keys optional).
Features are the 2048-d global-average-pooled activations (``fc`` removed) of 299x299 RGB frames
normalised like torchvision's ImageNet models. Numbers are comparable only between runs that
use the same weights file: pytorch-fid's TF-ported ``pt_inception`` weights (the ones papers use)
have another layout and give other values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


class FIDWeightsMissing(RuntimeError):
    """FID was requested without an Inception-v3 weights file."""


def load_inception(weights: str | Path | None, device: str | torch.device = "cpu") -> torch.nn.Module:
    if not weights:
        raise FIDWeightsMissing("FID needs Inception-v3 weights: pass --fid-weights FILE (a torchvision inception_v3 "
                                "state_dict, e.g. inception_v3_google-0cc3c7bd.pth); nothing is downloaded")
    from torchvision.models import inception_v3

    from wav2lip_uhq.errors import CheckpointError

    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{weights}: cannot read Inception-v3 weights ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    aux = any(k.startswith("AuxLogits.") for k in state)
    model = inception_v3(weights=None, aux_logits=aux, init_weights=False, transform_input=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: not a torchvision inception_v3 state_dict ({exc})") from exc
    model.fc = torch.nn.Identity()
    return model.eval().to(device)


@torch.no_grad()
def inception_features(model: torch.nn.Module, frames_bgr: Iterable[np.ndarray], size: int = 299,
                       batch_size: int = 16, device: str | torch.device = "cpu") -> np.ndarray:
    """(N, 2048) float64 features of BGR uint8 frames."""
    feats, batch = [], []

    def flush() -> None:
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).to(device)
        feats.append(model(x).double().cpu().numpy())
        batch.clear()

    for f in frames_bgr:
        rgb = cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)[:, :, ::-1].astype(np.float32) / 255.0
        batch.append((rgb - _MEAN) / _STD)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not feats:
        raise ValueError("no frames for FID")
    return np.concatenate(feats)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between two feature sets (rows = samples).

    Tr((S_a S_b)^1/2) is the nuclear norm of ``A B^T / sqrt((n_a - 1)(n_b - 1))`` (A, B the centred
    features) when the sets are smaller than the feature dimension, else the sum of the square roots of
    the eigenvalues of the symmetric ``S_a^1/2 S_b S_a^1/2``. Both are exact for rank-deficient
    covariances (no ``sqrtm`` and no complex parts): FID(a, a) = 0 up to rounding."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least 2 frames per set")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("Inception features are not finite (wrong weights file?)")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    na, nb = len(a) - 1, len(b) - 1
    tr_a, tr_b = (ca * ca).sum() / na, (cb * cb).sum() / nb
    if min(len(a), len(b)) <= a.shape[1]:
        tr_sqrt = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    else:
        sa, sb = ca.T @ ca / na, cb.T @ cb / nb
        w, v = np.linalg.eigh(sa)
        root_a = (v * np.sqrt(w.clip(0))) @ v.T
        m = root_a @ sb @ root_a
        tr_sqrt = np.sqrt(np.linalg.eigvalsh((m + m.T) / 2).clip(0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + tr_a + tr_b - 2 * tr_sqrt)
