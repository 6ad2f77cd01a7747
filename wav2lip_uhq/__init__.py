"""wav2lip-uhq: high-quality Wav2Lip lip sync as a library, CLI, WebUI extension and trainer.

Importing the package is cheap (no torch); the heavy parts load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "RunConfig",
    "FaceOptions",
    "FrameOptions",
    "EncodeSettings",
    "LipSyncPipeline",
    "run",
    "__version__",
]


def __getattr__(name: str):
    if name in ("RunConfig", "FaceOptions", "FrameOptions"):
        from . import config

        return getattr(config, name)
    if name == "EncodeSettings":
        from .video import EncodeSettings

        return EncodeSettings
    if name in ("LipSyncPipeline", "run"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
