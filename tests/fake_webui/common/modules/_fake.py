"""Test-only: what ``fake_webui.install`` configured and what the fakes recorded.

Not a real WebUI module. ``install`` fills ``CONFIG`` before the other fake modules are imported
(they read it at import time, e.g. whether ``StableDiffusionProcessing`` has a ``scheduler``
field), and hands the recording lists to the test.
"""

from __future__ import annotations

CONFIG: dict = {
    "forge": False,  # Forge: modules_forge importable, lib_controlnet, distilled_cfg_scale
    "sd_schedulers": True,  # WebUI >= 1.9 (sampler + scheduler); False: 1.8 combined names
    "controlnet": True,
}

sd_model = None  # the loaded model (A1111: None when no checkpoint loaded; Forge: a placeholder)
cn_models: list[str] = []  # the ControlNet model names the host lists (after a rescan)

calls: list[dict] = []  # one entry per process_images(p)
cn_calls: list[dict] = []  # one entry per ControlNet script process(p, ...)
script_calls: list[tuple[str, str]] = []  # (script title, hook) of the other always-on scripts
reported: list[str] = []  # errors.report / errors.display messages
saved_images: list[dict] = []  # images.save_image calls
gc_calls: list[int] = []  # devices.torch_gc calls
cn_model_loads: list[str] = []  # ControlNet models built from disk (A1111 CN's load_control_model misses)
sd_model_unloads: list[int] = []  # sd_models.unload_model_weights calls
sd_model_loads: list[str] = []  # checkpoints loaded (Forge loads the selected one at the first generation)
hooks: dict = {
    "before_sample": None,  # fn(p): runs inside process_images just before sampling (raise, interrupt...)
    "sample_step": None,  # fn(p, step, steps): after each sampler step (a slow sampler sleeps here)
    "after_sample": None,  # fn(p, image) -> image | None: replace the sampled image
}


def lock_held(lock) -> bool:
    """Whether a ``fifo_lock.FIFOLock`` is held (the real one has no ``locked()``)."""
    return lock._lock.locked()
