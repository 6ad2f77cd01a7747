"""Wav2Lip behind the generator interface: mel windows, the square face crop (96 px for the
released models) and upstream's pre/post-processing (lower half zeroed, x255 then uint8)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import audio as audio_mod
from ..compositing import Placement, extract_crop, eye_angle
from ..faces.stream import FaceGeometry

SILENT_MEL = np.full((80, audio_mod.MEL_STEP), -audio_mod.MAX_ABS, np.float32)  # the mel of digital silence


class MelWindows:
    """One (80, 16) mel window per output frame."""

    def __init__(self, windows: np.ndarray) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def take(self, indices: Sequence[int]) -> np.ndarray:
        return np.stack([self.windows[i] for i in indices])

    def silenced(self, silent: np.ndarray) -> MelWindows:
        windows = np.array(self.windows)  # a writable copy (the windows are a strided view)
        windows[silent] = SILENT_MEL
        return MelWindows(windows)


def mel_features(wav: np.ndarray, fps: float, cover: bool) -> MelWindows:
    """Upstream's mel windows; with ``cover``, the last window is held until the video covers
    the whole audio (upstream stops one window short of the audio's end)."""
    windows = audio_mod.mel_windows(audio_mod.melspectrogram(wav), fps)
    if cover:
        n = int(np.ceil(len(wav) / audio_mod.SAMPLE_RATE * fps - 1e-6))
        if n > len(windows):
            windows = np.concatenate([windows, np.repeat(windows[-1:], n - len(windows), axis=0)])
    return MelWindows(windows)


class Wav2LipGenerator:
    """A loaded Wav2Lip model (BN folded, channels-last on CPU) on its device and dtype."""

    reuse_prepared = False  # a crop is one resize: cheaper than keeping it

    def __init__(self, model, device: str) -> None:
        self.model = model
        self.device = device
        self.dtype = next(model.parameters()).dtype
        self.img_size: int = model.img_size

    @classmethod
    def load(cls, path: str | Path, device: str, precision: str = "fp32",
             trust_torchscript: bool = False) -> Wav2LipGenerator:
        """Weights-only loading of a released (or trained) checkpoint; a TorchScript archive
        (code) only when the user trusts it."""
        import torch

        from ..models import load_model
        from ..models.optimize import fold_batchnorm

        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        model = fold_batchnorm(load_model(path, device=device, kind="wav2lip", trust_torchscript=trust_torchscript)).to(dtype)
        if device == "cpu":
            model.to(memory_format=torch.channels_last)  # faster CPU convolutions (oneDNN)
        return cls(model, device)

    def parameters(self):
        """The model's parameters (callers that ask for the dtype)."""
        return self.model.parameters()

    def audio_features(self, wav: np.ndarray, fps: float, cover: bool) -> MelWindows:
        return mel_features(wav, fps, cover)

    def placement(self, geometry: FaceGeometry, index: int, aligned: bool, frame_size: tuple[int, int]) -> Placement:
        """The tracked box as it is (a crop past the frame's edge repeats the border)."""
        landmarks = geometry.landmarks
        angle = eye_angle(landmarks) if aligned and landmarks is not None else 0.0
        return Placement.from_box(geometry.box, self.img_size, landmarks, index, angle)

    def prepare(self, frame: np.ndarray, placement: Placement) -> np.ndarray:
        return extract_crop(frame, placement)

    def generate(self, prepared: Sequence[np.ndarray], features: np.ndarray) -> np.ndarray:
        return generate_faces(self.model, np.stack(prepared), features, self.device, self.dtype)


def generate_faces(model, crops: np.ndarray, mels: np.ndarray, device: str, dtype) -> np.ndarray:
    """Upstream's pre/post-processing: lower half zeroed, 6 channels /255, x255 then uint8 truncation."""
    import torch

    with torch.inference_mode():
        faces = torch.from_numpy(np.ascontiguousarray(crops)).to(device)
        masked = faces.clone()
        masked[:, faces.shape[1] // 2 :] = 0
        # NHWC storage viewed as NCHW is channels_last: what the optimised CPU model wants.
        x = torch.cat([masked, faces], dim=3).permute(0, 3, 1, 2).float() / 255.0
        mel = torch.from_numpy(np.ascontiguousarray(mels)).to(device).unsqueeze(1).float()
        pred = model(mel.to(dtype), x.to(dtype)).float()
        pred = (pred.permute(0, 2, 3, 1) * 255.0).to(torch.uint8)
    return pred.cpu().numpy()
