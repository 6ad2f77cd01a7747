"""LSE-D / LSE-C, computed like syncnet_python (Wav2Lip's ``calculate_scores_LRS.py``).

The metric network is syncnet_python's ``SyncNetModel.S`` (``syncnet_v2.model``, loaded from the
user's file; its state_dict layout is in ``shared/reference/models/syncnet_lse.keys.json``).
Lips: (B, 3, 5, 224, 224) raw BGR 0..255; audio: (B, 1, 13, 20) MFCC (python_speech_features
defaults, 100 Hz). For each video frame v < n - 5, the lip feature of frames v..v+4 is compared
(Euclidean) with the audio features of MFCC columns 4(v+k) .. +20 for k in -vshift..vshift;
offset = vshift - argmin(mean distance), LSE-D = min mean distance, LSE-C = median - min.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


def _bn_relu_conv2d(cin, cout, k, s=1, p=0):
    return [nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout), nn.ReLU()]


class SyncNetLSE(nn.Module):
    """syncnet_python's ``S`` (13.6 M parameters); indices of Sequential entries are the file format."""

    def __init__(self, embedding: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_bn_relu_conv2d(1, 64, 3, 1, 1), nn.MaxPool2d(1, 1),  # 0-3
            *_bn_relu_conv2d(64, 192, 3, 1, 1), nn.MaxPool2d(3, (1, 2)),  # 4-7
            *_bn_relu_conv2d(192, 384, 3, 1, 1),  # 8-10
            *_bn_relu_conv2d(384, 256, 3, 1, 1),  # 11-13
            *_bn_relu_conv2d(256, 256, 3, 1, 1), nn.MaxPool2d(3, 2),  # 14-17
            *_bn_relu_conv2d(256, 512, (5, 4), 1, 0),  # 18-20
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding))

        def c3(cin, cout, k, s=1, p=0):
            return [nn.Conv3d(cin, cout, k, s, p), nn.BatchNorm3d(cout), nn.ReLU()]

        self.netcnnlip = nn.Sequential(
            *c3(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),  # 0-3
            *c3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),  # 4-7
            *c3(256, 256, (1, 3, 3), 1, (0, 1, 1)),  # 8-10
            *c3(256, 256, (1, 3, 3), 1, (0, 1, 1)),  # 11-13
            *c3(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),  # 14-17
            *c3(256, 512, (1, 6, 6), 1, 0),  # 18-20
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_lse_model(path: str | Path, device: str | torch.device = "cpu") -> SyncNetLSE:
    """Load ``syncnet_v2.model`` (a plain state_dict) with weights_only=True; eval mode."""
    from wav2lip_uhq.errors import CheckpointError

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read the syncnet_v2 model ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = SyncNetLSE()
    try:
        model.load_state_dict({k.removeprefix("module.").removeprefix("__S__."): v for k, v in state.items()},
                              strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: not syncnet_python's syncnet_v2.model ({exc})") from exc
    missing = set(model.state_dict()) - {k.removeprefix("module.").removeprefix("__S__.") for k in state}
    missing = {k for k in missing if not k.endswith("num_batches_tracked")}
    if missing:
        raise CheckpointError(f"{path}: not syncnet_python's syncnet_v2.model ({len(missing)} weights missing)")
    return model.eval().to(device)


def mfcc_features(wav16k: np.ndarray) -> np.ndarray:
    """(13, N) MFCC at 100 Hz from 16 kHz audio, as syncnet_python (int16 input, library defaults)."""
    import python_speech_features

    pcm = np.asarray(wav16k)
    if pcm.dtype != np.int16:
        pcm = np.clip(np.round(pcm * 32768.0), -32768, 32767).astype(np.int16)
    return np.asarray(python_speech_features.mfcc(pcm, 16000), dtype=np.float64).T


@dataclass
class LSEResult:
    offset: int
    lse_d: float  # minimum mean distance (lower is better)
    lse_c: float  # confidence: median - minimum (higher is better)
    frames: int
    distances: list[float]  # mean distance per shift, -vshift..vshift of the audio


def calc_pdist(lip: torch.Tensor, aud: torch.Tensor, vshift: int) -> torch.Tensor:
    """(n_frames, 2*vshift+1) distances; audio zero-padded (edge shifts compare with zero vectors)."""
    win = 2 * vshift + 1
    padded = F.pad(aud, (0, 0, vshift, vshift))
    return torch.stack([F.pairwise_distance(lip[[i]].repeat(win, 1), padded[i : i + win]) for i in range(len(lip))])


@torch.no_grad()
def lse_scores(model: SyncNetLSE, frames_bgr: Sequence[np.ndarray], wav16k: np.ndarray, vshift: int = 15,
               batch_size: int = 20, device: str | torch.device = "cpu") -> LSEResult:
    """Score one clip (25 fps frames already cropped to the face; resized to 224 here)."""
    imgs = np.stack([cv2.resize(f, (224, 224)) for f in frames_bgr]).astype(np.float32)  # (N,224,224,3)
    video = torch.from_numpy(imgs).permute(3, 0, 1, 2).unsqueeze(0)  # (1,3,N,224,224)
    mfcc = torch.from_numpy(mfcc_features(wav16k)).float()[None, None]  # (1,1,13,M)
    n_audio = len(wav16k)
    min_length = min(len(frames_bgr), math.floor(n_audio / 640))
    last = min_length - 5
    if last < 1:
        raise ValueError(f"clip too short for LSE: {len(frames_bgr)} frames, {n_audio / 16000:.2f} s of audio")
    lip_feats, aud_feats = [], []
    for i in range(0, last, batch_size):
        idx = range(i, min(last, i + batch_size))
        lip = torch.cat([video[:, :, v : v + 5] for v in idx], 0).to(device)
        aud = torch.cat([mfcc[:, :, :, 4 * v : 4 * v + 20] for v in idx], 0).to(device)
        lip_feats.append(model.forward_lip(lip).cpu())
        aud_feats.append(model.forward_aud(aud).cpu())
    dists = calc_pdist(torch.cat(lip_feats), torch.cat(aud_feats), vshift)
    mdist = dists.mean(0)
    minval, minidx = torch.min(mdist, 0)
    conf = torch.median(mdist) - minval
    return LSEResult(int(vshift - minidx), float(minval), float(conf), last, mdist.tolist())
