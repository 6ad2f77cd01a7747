"""UHQ refinement: SD img2img + ControlNet on the masked mouth (``--mode uhq``).

- ``base``: ``RefineOptions``, ``ControlSpec``, the ``Refiner`` protocol and the crop/mask/paste
  logic every backend shares (only a square around the mouth mask is ever diffused).
- ``control``: ControlNet preprocessors (canny, lineart, tile, mediapipe_face) on the Wav2Lip crop.
- ``consistency``: fixed per-track noise, residual blending along the track, the sync guard.
- ``session``: one run: batching, every-N key frames, progress, cancel, pasting.
- ``diffusers_backend``: the diffusers backend; the WebUI backend implements the same ``refine``.

Nothing here imports torch or diffusers at module level.
"""

from .base import DEFAULT_NEGATIVE, DEFAULT_PROMPT, ControlSpec, FrameJob, RefineBatch, RefineOptions, Refiner
from .session import RefineSession


def create_refiner(options: RefineOptions, device: str = "cpu", backend: str = "diffusers") -> Refiner:
    """The refiner for ``backend``: "diffusers" here; the WebUI extension passes its own."""
    if backend != "diffusers":
        raise ValueError(f"unknown refine backend {backend!r}")
    from .diffusers_backend import DiffusersRefiner

    return DiffusersRefiner.from_options(options, device)


__all__ = [
    "DEFAULT_NEGATIVE",
    "DEFAULT_PROMPT",
    "ControlSpec",
    "FrameJob",
    "RefineBatch",
    "RefineOptions",
    "RefineSession",
    "Refiner",
    "create_refiner",
]
