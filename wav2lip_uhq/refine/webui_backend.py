"""The WebUI backend: ``--mode uhq`` inside AUTOMATIC1111's WebUI (1.6 - 1.10) or Forge.

Each mouth crop is one masked img2img run through ``modules.processing`` on the checkpoint the
WebUI has loaded (no second copy of SD is ever loaded), with ControlNet through the installed
ControlNet extension's ``external_code`` API. Nothing here imports ``modules.*`` at module level:
this file imports without the WebUI.

Choices:

- **"Whole picture", not "Only masked".** The crops are already the square around the mouth at
  the working size, so ``inpaint_full_res=False`` with ``width``/``height`` = the crop size samples
  the crop 1:1: no second crop and rescale of the mask's bounding box (double resampling, and a
  different effective resolution than the diffusers backend), the control image stays aligned
  with the crop without depending on ControlNet's "crop the input like the inpaint area" rules,
  and the result has the crop's size (``inpaint_full_res=True`` would also give the init size, but
  through a crop / resize / paste round trip). ``inpainting_fill=1`` (original), ``mask_blur=0``:
  the working mask is already grown past the compositing mask's soft edge, and with no blur the
  WebUI's overlay keeps every pixel outside it exactly, like the diffusers backend.
- **ControlNet, "minimal runner".** ``p.scripts`` is a copy of ``scripts_img2img`` whose only
  always-on script is a copy of the ControlNet script (its args slice = our units; no always-on
  script at all without ControlNet), with an empty ``callback_map``, built once per refiner (one
  job) for every crop; the SD model hash ControlNet keeps on its script object goes back to the
  WebUI's own script, so its class-wide model cache is not cleared (and the model not read from
  disk again) per crop or per job. ``p.is_api = True`` is set before the scripts are assigned so
  the Seed / Sampler scripts never overwrite our values. It works on A1111 and Forge alike, runs
  no other extension (soft inpainting, the user's own ControlNet units...), and never mutates the
  WebUI's shared runner or script objects beyond that hash (which ControlNet itself would have
  written). Units always pass ``enabled=True``, ``module``, ``model`` (``enabled`` defaults to
  False in CN >= 1.1.449); the module is the host's "none": the control image is already
  preprocessed by us (Forge gets it as an image/mask pair); the model name is resolved against
  the host's list.
- **Lock per batch.** ``call_queue.queue_lock`` (the WebUI's generation lock) is held for one
  ``refine(batch)`` call, i.e. ``options.batch_size`` crops: the model cannot be switched by
  another job between the crops of a batch, the progress fields we set are not reset under us,
  and other WebUI jobs still get a turn between batches (a long video never blocks the WebUI for
  its whole duration). The lock is not reentrant: a caller that already holds it (e.g. a job run
  through ``call_queue.wrap_gradio_gpu_call`` / ``wrap_queued_call``) passes
  ``hold_queue_lock=False``.
- **State.** The caller owns ``shared.state.begin()/end()``; this backend reads
  ``interrupted`` / ``stopping_generation`` (-> ``errors.Cancelled``), treats ``skipped`` as "keep
  this crop unrefined", sets ``job_count`` / ``job_no`` / ``textinfo`` for the progress bar during
  a batch and puts them back afterwards, even on errors. WebUI settings are never changed
  directly: the ones that would leak into these runs (``save_init_img``, colour correction...) are
  overridden per run with ``override_settings`` where they differ (restored by ``process_images``,
  and checked again here); under ``--freeze-settings`` nothing can be overridden (the WebUI would
  fail every crop), so the step count is compensated and the rest is warned about once.
- **Forge's placeholder model.** ``shared.sd_model`` is never None in Forge: before the first
  generation it is a placeholder, and the selected checkpoint loads in ``process_images``; "no
  checkpoint" is Forge having none to select.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import importlib.util
import inspect
import logging
import os
import re

import numpy as np

from ..errors import Cancelled, CheckpointError, InputError, Wav2LipUHQError
from .base import RefineBatch, RefineOptions

log = logging.getLogger(__name__)

# our sampler names (diffusers_backend.SAMPLERS) -> (WebUI >= 1.9 sampler, schedule type)
WEBUI_SAMPLERS = {
    "ddim": ("DDIM", "Automatic"),
    "euler": ("Euler", "Automatic"),
    "euler_a": ("Euler a", "Automatic"),
    "dpm++_2m": ("DPM++ 2M", "Uniform"),  # "Automatic" would be Karras for DPM++ 2M
    "dpm++_2m_karras": ("DPM++ 2M", "Karras"),
    "unipc": ("UniPC", "Automatic"),
    "lcm": ("LCM", "Automatic"),
    "turbo": ("Euler a", "SGM Uniform"),  # trailing timesteps, as for SD-Turbo
}
# WebUI < 1.9 had these schedules only as part of the sampler name ("DPM++ 2M Karras")
_LEGACY_SUFFIXED = ("Karras", "Exponential")

# user settings that would leak into every crop's img2img run; overridden per run
LEAKING_SETTINGS = {
    "save_init_img": False,  # would save every crop to outputs/init-images
    "img2img_color_correction": False,
    "img2img_fix_steps": False,  # steps x denoise, as in the diffusers backend
    "img2img_extra_noise": 0.0,
    "return_mask": False,
    "return_mask_composite": False,
}
CN_SETTINGS = {"control_net_no_detectmap": True}

_STATE_FIELDS = ("job", "job_no", "job_count", "textinfo")
_MODEL_EXTS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_HASH = re.compile(r"\s*\[([0-9a-fA-F]{6,})\]\s*$")

NO_MODEL_MESSAGE = (
    "--mode uhq in the WebUI refines the mouth with the WebUI's own Stable Diffusion model, and no "
    "checkpoint is loaded: choose an SD 1.5 checkpoint in the 'Stable Diffusion checkpoint' menu at the top "
    "of the WebUI (put one in models/Stable-diffusion first if the menu is empty), then run again"
)


# what a leaking setting does to the crops when it cannot be overridden
LEAK_EFFECTS = {
    "save_init_img": "every mouth crop is saved to the init-images folder",
    "img2img_color_correction": "the refined mouth's colours are pulled towards the crop's",
    "img2img_extra_noise": "extra noise is added to every crop",
}  # return_mask*, control_net_no_detectmap only add images we skip; img2img_fix_steps is compensated


def _frozen(opts, key: str) -> bool:
    """Whether the WebUI refuses changes to ``key`` (``--freeze-settings``,
    ``--freeze-settings-in-sections``, ``--freeze-specific-settings``): ``process_images`` would
    fail on it (an AssertionError from ``Options.__setattr__``, also when restoring)."""
    from modules import shared

    cmd = getattr(shared, "cmd_opts", None)
    if getattr(cmd, "freeze_settings", False):
        return True
    names = getattr(cmd, "freeze_specific_settings", None)
    if names and key in [n.strip() for n in str(names).split(",")]:
        return True
    sections = getattr(cmd, "freeze_settings_in_sections", None)
    info = (getattr(opts, "data_labels", None) or {}).get(key)
    section = getattr(info, "section", None)
    return bool(sections and section and section[0] in [n.strip() for n in str(sections).split(",")])


def _no_sd_model(model) -> bool:
    """No checkpoint to refine with. A1111: ``shared.sd_model`` is None. Forge: it is never None,
    a placeholder (no ``sd_checkpoint_info``) until the first generation loads the selected
    checkpoint; there is none when Forge has no checkpoint to select."""
    if model is None:
        return True
    if getattr(model, "sd_checkpoint_info", None) is not None:
        return False
    from modules import sd_models

    params = getattr(sd_models.model_data, "forge_loading_parameters", None)
    if isinstance(params, dict):
        return params.get("checkpoint_info") is None
    return not getattr(sd_models, "checkpoints_list", None)


# -- samplers -----------------------------------------------------------------------------------
def webui_sampler(name: str) -> tuple[str, str | None]:
    """(sampler, schedule type) for the WebUI from our sampler name (``"dpm++_2m_karras"`` ->
    ``("DPM++ 2M", "Karras")``) or a WebUI name (``"DPM++ SDE Karras"``, ``"Euler a"``). WebUI < 1.9
    (no ``modules.sd_schedulers``): the legacy combined name and None (``"DPM++ 2M Karras"``).
    ValueError when the host has no such sampler (the WebUI would silently use another)."""
    from modules import sd_samplers

    try:
        from modules import sd_schedulers

        schedules = list(sd_schedulers.schedulers)
    except ImportError:
        schedules = None
    available = {}
    for s in sd_samplers.all_samplers:
        available[s.name.lower()] = s.name
        for alias in getattr(s, "aliases", None) or ():
            available.setdefault(alias.lower(), s.name)

    key = name.strip().lower().replace(" ", "_")
    if key in WEBUI_SAMPLERS:
        sampler, schedule = WEBUI_SAMPLERS[key]
    else:
        sampler, schedule = name.strip(), "Automatic"
        if schedules is not None and sampler.lower() not in available:
            for s in schedules:
                labels = [s.label, s.name, *(getattr(s, "aliases", None) or ())]
                label = next((x for x in labels if sampler.lower().endswith(" " + x.lower())), None)
                if label is not None:
                    sampler, schedule = sampler[: -len(label) - 1], s.label
                    break

    listing = ", ".join(sorted({v for v in available.values()}))
    if schedules is None:
        names = ([f"{sampler} {schedule}"] if schedule in _LEGACY_SUFFIXED else []) + [sampler]
        for candidate in names:
            if candidate.lower() in available:
                if candidate != names[0]:
                    log.warning("sampler %s: this WebUI has no %r, using %r", name, names[0], candidate)
                return available[candidate.lower()], None
        raise ValueError(f"sampler {name!r} ({names[0]}) is not available in this WebUI (available: {listing})")
    if sampler.lower() not in available:
        raise ValueError(f"sampler {name!r} ({sampler}) is not available in this WebUI (available: {listing})")
    labels = {}
    for s in schedules:
        for x in (s.label, s.name, *(getattr(s, "aliases", None) or ())):
            labels[x.lower()] = s.label
    if schedule.lower() not in labels:
        raise ValueError(f"schedule type {schedule!r} is not available in this WebUI "
                         f"(available: {', '.join(s.label for s in schedules)})")
    return available[sampler.lower()], labels[schedule.lower()]


# -- ControlNet -----------------------------------------------------------------------------------
def _split_model_name(name: str) -> tuple[str, str | None]:
    """("control_v11p_sd15_canny", "d14c016b") from "control_v11p_sd15_canny [d14c016b]", a file
    name or a path: lower-case stem without extension, and the hash if any."""
    name = name.strip()
    m = _HASH.search(name)
    digest = m.group(1).lower() if m else None
    if m:
        name = name[: m.start()]
    base = re.split(r"[\\/]", name)[-1]
    root, ext = os.path.splitext(base)
    if ext.lower() in _MODEL_EXTS:
        base = root
    return base.strip().lower(), digest


def match_controlnet_model(requested: str, available: list[str]) -> str | None:
    """The host's model name for ``requested`` (a listed name, a stem, a file name or path, with
    or without the hash); None if nothing matches; ``CheckpointError`` if ambiguous."""
    names = [n for n in available if n and n.strip().lower() != "none"]
    if requested in names:
        return requested
    stem, digest = _split_model_name(requested)
    split = [(n, *_split_model_name(n)) for n in names]
    same = [n for n, s, _ in split if s == stem]
    if digest is not None:
        exact = [n for n, s, d in split if s == stem and d == digest]
        if exact:
            return exact[0]
    if same:
        if digest is not None:
            log.warning("ControlNet model %s: no model with that hash, using %s", requested, same[0])
        return same[0]
    partial = [n for n, s, _ in split if stem and stem in s]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        raise CheckpointError(f"ControlNet model {requested!r} is ambiguous in this WebUI: it matches "
                              f"{', '.join(partial)}; give the full name")
    return None


def _a1111_external_code():
    """sd-webui-controlnet's ``external_code`` from the active extension whose directory is named
    like it (users may rename the directory), or None."""
    from modules import extensions

    for ext in extensions.active():
        path = getattr(ext, "path", None)
        if not path:
            continue
        dirname = os.path.basename(os.path.normpath(path))
        if "controlnet" not in re.sub(r"[^a-z]", "", f"{dirname} {ext.name}".lower()):
            continue
        file = os.path.join(path, "scripts", "external_code.py")
        if not os.path.isfile(file):
            continue
        try:
            return importlib.import_module(f"extensions.{dirname}.scripts.external_code")
        except ImportError:  # e.g. --data-dir elsewhere: "extensions" is not importable; load the file
            name = f"_wav2lip_uhq_cn_external_code_{re.sub(r'[^A-Za-z0-9_]', '_', dirname)}"
            spec = importlib.util.spec_from_file_location(name, file)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


def _unit_fields(cls) -> set[str] | None:
    """The keyword arguments ``cls`` (the host's ControlNetUnit) takes; None: anything."""
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    for attr in ("model_fields", "__fields__"):  # pydantic v2 / v1
        fields = getattr(cls, attr, None)
        if isinstance(fields, dict) and fields:
            return set(fields)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)


@dataclasses.dataclass
class HostControlNet:
    """The host's ControlNet: ``kind`` "a1111" (sd-webui-controlnet) or "forge" (built-in)."""

    kind: str
    external_code: object
    global_state: object | None
    script: object  # the ControlNet script object in scripts.scripts_img2img

    def models(self, update: bool = False) -> list[str]:
        if self.kind == "forge":
            gs = self.global_state
            if update:
                refresh = getattr(gs, "update_controlnet_filenames", None) or getattr(gs, "update_cn_models", None)
                if refresh is not None:
                    refresh()
            names = gs.get_all_controlnet_names() if hasattr(gs, "get_all_controlnet_names") else gs.controlnet_names
        else:
            names = self.external_code.get_models(update=update)
        return [n for n in names if n and n.strip().lower() != "none"]

    def none_module(self) -> str:
        """The host's name of the "no preprocessor" module ("none" in A1111, "None" in Forge)."""
        if self.kind == "forge":
            names = self.global_state.get_all_preprocessor_names()
        else:
            names = self.external_code.get_modules()
        for n in names:
            if n.strip().lower() == "none":
                return n
        raise InputError(f"the WebUI's ControlNet has no 'none' preprocessor (it lists: {', '.join(names)})")

    def resolve_model(self, requested: str) -> str:
        found = match_controlnet_model(requested, self.models())
        if found is None:
            found = match_controlnet_model(requested, self.models(update=True))  # maybe added since startup
        if found is None:
            listing = ", ".join(self.models()) or "none"
            raise CheckpointError(
                f"ControlNet model {requested!r} is not in the WebUI's ControlNet model list (available: "
                f"{listing}); put it in models/ControlNet and refresh the ControlNet model list, or use one "
                "of those names")
        return found

    def unit(self, **kwargs):
        cls = self.external_code.ControlNetUnit
        fields = _unit_fields(cls)
        return cls(**{k: v for k, v in kwargs.items() if fields is None or k in fields})

    def control_image(self, image: np.ndarray):
        """The unit's ``image`` in the host's format: Forge indexes ``image["image"]`` and
        ``image["mask"]`` (a bare array fails there, and a missing mask fails on an all-dark map
        such as canny with no edges), so it gets the pair with an empty mask; sd-webui-controlnet
        takes the array."""
        image = np.ascontiguousarray(image)
        if self.kind == "forge":
            return {"image": image, "mask": np.zeros_like(image)}
        return image


def find_controlnet() -> HostControlNet | None:
    """The host's ControlNet (Forge's built-in first, then an A1111 sd-webui-controlnet), or None
    when none is installed, enabled and loaded in img2img."""
    from modules import scripts

    try:
        from lib_controlnet import external_code, global_state  # Forge's built-in ControlNet

        kind = "forge"
    except ImportError:
        external_code, global_state, kind = _a1111_external_code(), None, "a1111"
        if external_code is None:
            return None
    runner = getattr(scripts, "scripts_img2img", None)
    script = None
    if runner is not None:
        finder = getattr(external_code, "find_cn_script", None)
        if finder is not None:
            script = finder(runner)
        else:
            script = next((s for s in runner.alwayson_scripts if s.title().lower() == "controlnet"), None)
    if script is None:
        log.warning("ControlNet (%s) is installed but its script is not loaded in img2img", kind)
        return None
    return HostControlNet(kind, external_code, global_state, script)


# -- the refiner ---------------------------------------------------------------------------------
class WebUIRefiner:
    """``Refiner`` on the WebUI's loaded SD model (``modules.processing`` img2img per crop).

    ``hold_queue_lock``: take ``call_queue.queue_lock`` around each ``refine`` call; pass False
    when the caller already holds it (the lock is not reentrant)."""

    def __init__(self, options: RefineOptions, *, hold_queue_lock: bool = True) -> None:
        self.options = options
        self.hold_queue_lock = hold_queue_lock
        if options.checkpoint is not None:
            log.info("the WebUI backend uses the WebUI's loaded checkpoint; %s is ignored", options.checkpoint)
        if options.loras or options.embeddings:
            log.warning("LoRA / embedding files are ignored by the WebUI backend: use the WebUI's prompt syntax "
                        "(<lora:name:weight>, embedding names) in the prompt")
        self.sampler, self.scheduler = webui_sampler(options.sampler)
        from modules import processing

        fields = {f.name for f in dataclasses.fields(processing.StableDiffusionProcessingImg2Img)}
        if "scheduler" not in fields:
            self.scheduler = None
        self.controlnet: HostControlNet | None = None
        self.units: list[tuple[str, str]] = []  # (module, model) per ControlSpec
        self._runner_built, self._runner_value = False, None  # one script runner for the job
        self._warned_frozen = False
        if options.controlnets:
            self.controlnet = find_controlnet()
            if self.controlnet is None:
                wanted = ", ".join(c.model for c in options.controlnets)
                raise InputError(
                    f"ControlNet models were requested ({wanted}) but no ControlNet is active in this WebUI: "
                    "install and enable the sd-webui-controlnet extension (A1111; Forge has it built in), "
                    "or run --mode uhq without ControlNet models")
            module = self.controlnet.none_module()  # our control images are already preprocessed
            self.units = [(module, self.controlnet.resolve_model(c.model)) for c in options.controlnets]

    # -- WebUI plumbing
    def _lock(self):
        if not self.hold_queue_lock:
            return contextlib.nullcontext()
        from modules import call_queue

        return call_queue.queue_lock

    def _overrides(self, opts) -> dict:
        """The leaking settings to override in each crop's run: only those whose value differs
        (``process_images`` sets and restores every overridden key), and only where the WebUI lets
        a run change them (``--freeze-settings`` makes every change an AssertionError); the rest
        are warned about once (see ``_frozen_leaks``)."""
        wanted = dict(LEAKING_SETTINGS, **(CN_SETTINGS if self.controlnet is not None else {}))
        labels = getattr(opts, "data_labels", None)
        wanted = {k: v for k, v in wanted.items() if k in opts.data and (labels is None or k in labels)
                  and opts.data.get(k) != v}
        frozen = {k: v for k, v in wanted.items() if _frozen(opts, k)}
        if frozen:
            self._frozen_leaks(opts, frozen)
        return {k: v for k, v in wanted.items() if k not in frozen}

    def _frozen_leaks(self, opts, frozen: dict) -> None:
        if self._warned_frozen:
            return
        self._warned_frozen = True
        for k in frozen:
            if k in LEAK_EFFECTS:  # the others are harmless, or compensated (img2img_fix_steps: _steps)
                log.warning("the WebUI's settings are frozen: %s = %r applies to every mouth crop (%s)", k,
                            opts.data.get(k), LEAK_EFFECTS[k])

    def _steps(self, overrides: dict) -> int:
        """Our step count; when "do exactly the steps the slider says" is on and cannot be
        overridden (frozen settings), the steps the WebUI would otherwise run (steps x denoise)."""
        from modules import shared

        o = self.options
        if shared.opts.data.get("img2img_fix_steps") and "img2img_fix_steps" not in overrides:
            return max(1, int(o.steps * o.denoise))
        return o.steps

    def _runner(self, units: list):
        """A copy of ``scripts_img2img`` whose only always-on script is (a copy of) ControlNet, or
        none at all without ControlNet; None if the WebUI has not set up its img2img scripts.

        Built once per refiner (one job) and used for every crop: ControlNet keeps state on its
        script object (sd-webui-controlnet clears its class-wide model cache whenever the
        object's ``latest_model_hash`` differs from the SD model's, and a fresh copy per crop made
        it reload the model from disk for every crop)."""
        if self._runner_built:
            return self._runner_value
        from modules import scripts

        self._runner_built = True
        base = getattr(scripts, "scripts_img2img", None)
        if base is None:
            return None
        runner = copy.copy(base)
        runner.callback_map = {}  # the original's cache lists every always-on script
        runner.alwayson_scripts, runner.scripts, runner.selectable_scripts = [], [], []
        if units:
            cn = copy.copy(self.controlnet.script)
            cn.args_from, cn.args_to = 0, len(units)
            runner.alwayson_scripts, runner.scripts = [cn], [cn]
        self._runner_value = runner
        return runner

    def _carry_controlnet_state(self) -> None:
        """After a crop: the SD model hash our ControlNet copy has seen goes back to the WebUI's
        own ControlNet script, so neither its next run nor our next job clears the model cache
        for the same SD model (which would also evict the user's cached ControlNet models)."""
        runner = self._runner_value
        if runner is None or not runner.alwayson_scripts or self.controlnet is None:
            return
        ours, theirs = runner.alwayson_scripts[0], self.controlnet.script
        if hasattr(ours, "latest_model_hash") and hasattr(theirs, "latest_model_hash"):
            theirs.latest_model_hash = ours.latest_model_hash

    @staticmethod
    def _stopped(state) -> bool:
        return bool(getattr(state, "interrupted", False) or getattr(state, "stopping_generation", False))

    def _check_cancel(self, batch: RefineBatch, state) -> None:
        if self._stopped(state):
            raise Cancelled("cancelled: interrupted in the WebUI")
        if batch.cancel is not None and batch.cancel():
            raise Cancelled("cancelled")

    # -- one crop
    def _process(self, batch: RefineBatch, i: int, overrides: dict):
        from modules import processing
        from PIL import Image

        o = self.options
        crop = np.ascontiguousarray(batch.images[i])
        h, w = crop.shape[:2]
        mask = Image.fromarray(np.clip(np.rint(np.asarray(batch.masks[i], np.float32) * 255), 0, 255)
                               .astype(np.uint8), "L")
        kwargs = {
            "prompt": o.prompt, "negative_prompt": o.negative_prompt, "styles": [],
            "seed": int(batch.seeds[i]), "subseed": -1, "subseed_strength": 0,
            "seed_resize_from_h": -1, "seed_resize_from_w": -1,
            "sampler_name": self.sampler, "batch_size": 1, "n_iter": 1, "steps": self._steps(overrides),
            "cfg_scale": o.cfg,
            "width": w, "height": h, "restore_faces": False, "tiling": False,
            "do_not_save_samples": True, "do_not_save_grid": True,
            "denoising_strength": o.denoise,
            "override_settings": dict(overrides), "override_settings_restore_afterwards": True,
            "init_images": [Image.fromarray(crop[..., :3], "RGB")], "resize_mode": 0, "mask": mask, "mask_blur": 0,
            "inpainting_fill": 1, "inpaint_full_res": False, "inpaint_full_res_padding": 0,
            "inpainting_mask_invert": 0, "initial_noise_multiplier": 1.0,
        }
        if self.scheduler is not None:
            kwargs["scheduler"] = self.scheduler
        p = processing.StableDiffusionProcessingImg2Img(**kwargs)
        with contextlib.closing(p):
            p.is_api = True  # before the scripts: else Seed / Sampler overwrite seed, steps, sampler
            units = []
            if self.controlnet is not None:
                ec = self.controlnet.external_code
                resize = getattr(getattr(ec, "ResizeMode", None), "RESIZE", "Just Resize")
                balanced = getattr(getattr(ec, "ControlMode", None), "BALANCED", "Balanced")
                units = [
                    self.controlnet.unit(
                        enabled=True, module=module, model=model, weight=float(spec.weight),
                        image=self.controlnet.control_image(batch.controls[k][i]), resize_mode=resize, low_vram=False,
                        processor_res=max(h, w), threshold_a=-1, threshold_b=-1,
                        guidance_start=float(spec.guidance_start), guidance_end=float(spec.guidance_end),
                        pixel_perfect=False, control_mode=balanced, save_detected_map=False)
                    for k, (spec, (module, model)) in enumerate(zip(o.controlnets, self.units))
                ]
            runner = self._runner(units)
            if runner is not None:  # no other extension's always-on script runs on our crops
                p.scripts = runner
                p.script_args = units
            try:
                return processing.process_images(p)
            finally:
                self._carry_controlnet_state()

    def _result(self, processed, crop: np.ndarray) -> np.ndarray:
        from PIL import Image

        images = list(getattr(processed, "images", None) or [])
        index = getattr(processed, "index_of_first_image", 0) or 0
        if index >= len(images):
            raise Wav2LipUHQError("the WebUI returned no image for a mouth crop (see the WebUI console)")
        image = images[index]
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image))
        image = image.convert("RGB")
        h, w = crop.shape[:2]
        if image.size != (w, h):
            image = image.resize((w, h), Image.LANCZOS)
        return np.array(image, dtype=np.uint8)

    # -- Refiner protocol
    def refine(self, batch: RefineBatch) -> list[np.ndarray]:
        from modules import shared

        n = len(batch.images)
        if n == 0:
            return []
        state = shared.state
        self._check_cancel(batch, state)
        with self._lock():
            saved_state = {k: getattr(state, k, None) for k in _STATE_FIELDS}
            opts = shared.opts
            overrides = self._overrides(opts)
            saved_opts = {k: opts.data.get(k) for k in overrides}
            try:
                model = shared.sd_model
                if _no_sd_model(model):
                    raise CheckpointError(NO_MODEL_MESSAGE)
                if self.controlnet is not None and getattr(model, "is_sdxl", False):
                    log.warning("an SDXL checkpoint is loaded: SD 1.5 ControlNet models will not work with it")
                state.job_count, state.job_no = n, 0
                out = []
                for i in range(n):
                    self._check_cancel(batch, state)
                    state.textinfo = f"wav2lip-uhq: refining the mouth, crop {i + 1}/{n}"
                    processed = self._process(batch, i, overrides)
                    if self._stopped(state):  # the image is partial
                        raise Cancelled("cancelled: interrupted in the WebUI")
                    if getattr(state, "skipped", False):  # "Skip": this crop stays unrefined
                        state.skipped = False
                        out.append(np.array(batch.images[i], dtype=np.uint8))
                    else:
                        out.append(self._result(processed, batch.images[i]))
                    if batch.step is not None:
                        batch.step(i + 1, n)
                return out
            finally:
                for k, v in saved_opts.items():  # process_images restores them; make sure
                    if opts.data.get(k) != v:
                        opts.data[k] = v
                for k, v in saved_state.items():
                    setattr(state, k, v)
                tqdm = getattr(shared, "total_tqdm", None)
                if tqdm is not None:
                    tqdm.clear()
