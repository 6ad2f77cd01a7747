"""Shared fixtures: rule-filled checkpoints in the released layout, real face and speech clips.

Nothing is downloaded: every model file is generated here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from media_helpers import moving_face_frames, write_video

# ../shared/reference beside the checkout (CI and developers), or WAV2LIP_UHQ_REFERENCE.
REFERENCE = Path(
    os.environ.get("WAV2LIP_UHQ_REFERENCE") or Path(__file__).resolve().parents[2] / "shared" / "reference"
)


@pytest.fixture(scope="session")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data not found at {REFERENCE} (../shared/reference must sit beside the repo)")
    return REFERENCE


@pytest.fixture(scope="session")
def w2l_checkpoint(tmp_path_factory) -> Path:
    """A wav2lip_96 checkpoint in the released layout (module. prefix, training dict), fill-rule weights."""
    import torch

    from wav2lip_uhq.models import Wav2Lip
    from wav2lip_uhq.models.fill import fill_rule_state_dict

    path = tmp_path_factory.mktemp("ckpt") / "wav2lip_gan.pth"
    sd = fill_rule_state_dict(Wav2Lip(96))
    torch.save(
        {"state_dict": {"module." + k: v for k, v in sd.items()}, "optimizer": None, "global_step": 1, "global_epoch": 0},
        path,
    )
    return path


@pytest.fixture(scope="session")
def speech_short(tmp_path_factory, reference) -> Path:
    """1.4 s of the real speech clip, as a 16 kHz WAV."""
    import soundfile as sf

    wav, sr = sf.read(reference / "speech_16k.wav", dtype="float32")
    path = tmp_path_factory.mktemp("audio") / "speech_short.wav"
    sf.write(path, wav[: int(1.4 * sr)], sr)
    return path


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory) -> Path:
    import cv2
    import skimage.data

    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    cv2.imwrite(str(path), skimage.data.astronaut()[:, :, ::-1])
    return path


@pytest.fixture(scope="session")
def moving_face_video(tmp_path_factory) -> Path:
    frames, _ = moving_face_frames()
    return write_video(tmp_path_factory.mktemp("vid") / "moving.mkv", frames)


