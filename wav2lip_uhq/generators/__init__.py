"""Lip-sync generators behind one interface (see ``base``): Wav2Lip, and MuseTalk 1.5
(``generators.musetalk``, imported on use: it needs diffusers and transformers)."""

from .base import AudioFeatures, Generator
from .wav2lip import SILENT_MEL, MelWindows, Wav2LipGenerator

__all__ = ["SILENT_MEL", "AudioFeatures", "Generator", "MelWindows", "Wav2LipGenerator"]
