"""UHQ refinement: SD img2img + ControlNet on the masked mouth (``--mode uhq``).

- ``base``: ``RefineOptions``, ``ControlSpec``, the ``Refiner`` protocol and the crop/mask/paste
  logic every backend shares (only a square around the mouth mask is ever diffused).
- ``control``: ControlNet preprocessors (canny, lineart, tile, mediapipe_face) on the Wav2Lip crop.
- ``consistency``: fixed per-track noise, residual blending along the track, the sync guard.
- ``session``: one run: batching, every-N key frames, progress, cancel, pasting.
- ``diffusers_backend``: the diffusers backend (standalone app, CLI, library).
- ``webui_backend``: the WebUI backend (the WebUI's loaded model through ``modules.processing``).

Nothing here imports torch or diffusers at module level.
"""

from .base import DEFAULT_NEGATIVE, DEFAULT_PROMPT, ControlSpec, FrameJob, RefineBatch, RefineOptions, Refiner
from .session import RefineSession


def create_refiner(options: RefineOptions, device: str = "cpu", backend: str = "diffusers",
                   **backend_options) -> Refiner:
    """The refiner for ``backend``: "diffusers" (loads ``options.checkpoint`` on ``device``) or
    "webui" (inside the WebUI: its loaded SD model and ControlNet extension; ``device`` is the
    WebUI's; ``backend_options`` go to ``WebUIRefiner``, e.g. ``hold_queue_lock=False``)."""
    if backend == "webui":
        from .webui_backend import WebUIRefiner

        return WebUIRefiner(options, **backend_options)
    if backend != "diffusers":
        raise ValueError(f"unknown refine backend {backend!r}")
    if backend_options:
        raise TypeError(f"unexpected options for the diffusers backend: {', '.join(backend_options)}")
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
