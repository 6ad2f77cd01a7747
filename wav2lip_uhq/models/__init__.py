"""Wav2Lip-family models (defined once; the training subpackage imports them from here)."""

from .loading import (
    ARCHITECTURES,
    Architecture,
    detect_architecture,
    load_model,
    read_state_dict,
    save_checkpoint,
)
from .syncnet import SyncNet
from .wav2lip import Wav2Lip, Wav2LipDiscQual

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "SyncNet",
    "Wav2Lip",
    "Wav2LipDiscQual",
    "detect_architecture",
    "load_model",
    "read_state_dict",
    "save_checkpoint",
]
