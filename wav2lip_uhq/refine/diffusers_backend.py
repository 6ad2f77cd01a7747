"""The diffusers backend (standalone app, CLI, library).

Loads an SD 1.5-family checkpoint (a single ``.safetensors``/``.ckpt`` file as WebUI users have
it, or a diffusers folder) and ControlNets (single file or folder), all offline: a single file
needs its model configs and tokenizer from ``config_dir`` (a diffusers-layout folder, weights not
needed) or from the Hugging Face cache; nothing is downloaded. A single-file ControlNet takes its
config from the loaded UNet. Runs masked img2img (``StableDiffusion[ControlNet]InpaintPipeline``
with the checkpoint's own 4-channel UNet: latents outside the mask are reset to the noised
original at every step), with LoRAs, textual inversions, fp16 on CUDA, attention slicing and
model CPU offload.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import Cancelled, InputError
from .base import RefineBatch, RefineOptions
from .consistency import generators

log = logging.getLogger(__name__)

# sampler name -> (diffusers scheduler class, extra config); WebUI names are accepted too
# ("DPM++ 2M Karras" -> "dpm++_2m_karras", "Euler a" -> "euler_a").
SAMPLERS = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++_2m": ("DPMSolverMultistepScheduler", {}),
    "dpm++_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),  # LCM checkpoints and LCM-LoRA: 2-8 steps, cfg 1-2
    "turbo": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}),  # SD-Turbo style, cfg 1
}


def sampler_key(name: str) -> str:
    key = name.strip().lower().replace(" ", "_")
    if key not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r} (choose from {', '.join(SAMPLERS)})")
    return key


def make_scheduler(name: str, base_config):
    import diffusers

    cls_name, extra = SAMPLERS[sampler_key(name)]
    return getattr(diffusers, cls_name).from_config(base_config, **extra)


def torch_dtype(precision: str, device: str):
    import torch

    if precision == "auto":
        precision = "fp16" if str(device).startswith("cuda") else "fp32"
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def load_sd(checkpoint: Path | str, config_dir: Path | None, dtype):
    """The SD pipeline's components (vae, text_encoder, tokenizer, unet, scheduler), offline."""
    from diffusers import StableDiffusionPipeline

    path = Path(checkpoint)
    common = dict(torch_dtype=dtype, safety_checker=None, requires_safety_checker=False, local_files_only=True)
    if not path.exists():
        raise InputError(f"{path}: SD checkpoint not found")
    if path.is_dir():
        pipe = StableDiffusionPipeline.from_pretrained(str(path), **common)
    else:
        if path.suffix.lower() not in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"):
            raise InputError(f"{path}: expected a .safetensors/.ckpt checkpoint or a diffusers folder")
        try:
            pipe = StableDiffusionPipeline.from_single_file(
                str(path), config=str(config_dir) if config_dir is not None else None, **common)
        except Exception as exc:  # classified below, re-raised when not ours
            unreadable = _unreadable(path)
            if unreadable:
                raise InputError(f"{path}: not a readable SD checkpoint: {unreadable}") from exc
            if not isinstance(exc, (OSError, ValueError)):
                raise
            if config_dir is not None:
                raise InputError(f"{path}: could not load with the configs in {config_dir}: {exc}") from exc
            raise InputError(
                f"{path}: a single-file checkpoint needs its SD 1.5 configs and tokenizer offline; pass "
                "--sd-config DIR (a diffusers-layout folder: model_index.json, unet/vae/text_encoder configs, "
                "tokenizer, scheduler; no weights needed), or fetch them once yourself, e.g. "
                "`huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5 --exclude '*.bin' "
                "'*.safetensors' '*.ckpt'`"
            ) from exc
    return {k: pipe.components[k] for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}


def _unreadable(path: Path) -> str | None:
    """Why the weights in ``path`` cannot be read (None when they can): safetensors header, or a
    weights-only unpickle for .ckpt/.pt (pickled code is refused, never run). Error path only."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt"):
                return None
        from ..models.loading import torch_load

        torch_load(path, mmap=zipfile.is_zipfile(path))
        return None
    except pickle.UnpicklingError:
        return ("it holds pickled objects other than tensors; .ckpt/.pt files are loaded weights-only, "
                "so it is refused (use a .safetensors file, or one from a source you trust)")
    except Exception as exc:  # noqa: BLE001 - safetensors/torch raise various types
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def load_controlnet(model: str, unet, dtype):
    """A ControlNet from a diffusers folder or a single file (its config derived from ``unet``)."""
    from diffusers import ControlNetModel

    path = Path(model)
    if not path.exists():
        raise InputError(f"{path}: ControlNet model not found")
    if path.is_dir():
        return ControlNetModel.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        ControlNetModel.from_unet(unet, load_weights_from_unet=False).save_config(tmp)
        return ControlNetModel.from_single_file(str(path), config=tmp, torch_dtype=dtype, local_files_only=True)


def _existing(path: Path | str, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    return path


def load_loras(pipe, loras) -> None:
    """LoRAs (diffusers/peft or kohya/WebUI layout, one file each) as weighted adapters; a file
    that is unreadable or has nothing for this model's UNet/text encoder is an error naming it."""
    names = []
    for i, (path, _) in enumerate(loras):
        path, name = _existing(path, "LoRA"), f"lora{i}"
        try:
            pipe.load_lora_weights(str(path), adapter_name=name)
        except Exception as exc:  # diffusers/peft/safetensors raise many types
            raise InputError(f"{path}: not a LoRA this SD 1.5 model can load: {exc}") from exc
        if not any(name in adapters for adapters in pipe.get_list_adapters().values()):
            raise InputError(f"{path}: no LoRA weights for this model's UNet or text encoder "
                             "(a LoRA for another model family, e.g. SDXL?)")
        names.append(name)
    if names:
        pipe.set_adapters(names, [float(w) for _, w in loras])


def load_embeddings(pipe, paths) -> None:
    """Textual inversions (diffusers ``{token: [n, dim]}`` or WebUI ``string_to_param``); the
    token is the file name, as in the WebUI."""
    for path in paths:
        path = _existing(path, "textual-inversion")
        try:
            pipe.load_textual_inversion(str(path), token=path.stem)
        except Exception as exc:  # reported with the file's name
            width = pipe.text_encoder.get_input_embeddings().weight.shape[-1]
            raise InputError(f"{path}: not a textual inversion for this model ({_embedding_shape(path)}; "
                             f"the text encoder needs vectors of width {width}): {exc}") from exc


def _embedding_shape(path: Path) -> str:
    """What the file holds, for error messages (weights only; never unpickles objects)."""
    from diffusers.models.model_loading_utils import load_state_dict

    try:
        sd = load_state_dict(str(path))
        sd = sd.get("string_to_param", sd)
        shapes = [tuple(v.shape) for v in sd.values() if hasattr(v, "shape")]
        return f"vectors of shape {shapes[0]}" if shapes else "no tensors"
    except Exception:  # noqa: BLE001 - only describes the file in an error message
        return "unreadable"


class DiffusersRefiner:
    """``Refiner`` on a diffusers inpaint pipeline; prompts are encoded once per run."""

    def __init__(self, components: dict, controlnets: list, options: RefineOptions, device: str = "cpu",
                 dtype=None) -> None:
        import torch
        from diffusers import (
            MultiControlNetModel,
            StableDiffusionControlNetInpaintPipeline,
            StableDiffusionInpaintPipeline,
        )

        self.options, self.device = options, device
        self.dtype = dtype or torch_dtype(options.precision, device)
        if len(controlnets) != len(options.controlnets):
            raise ValueError("one ControlNet model per ControlSpec")
        parts = dict(components, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        parts["scheduler"] = make_scheduler(options.sampler, components["scheduler"].config)
        if controlnets:
            cn = controlnets[0] if len(controlnets) == 1 else MultiControlNetModel(controlnets)
            pipe = StableDiffusionControlNetInpaintPipeline(controlnet=cn, **parts)
        else:
            pipe = StableDiffusionInpaintPipeline(**parts)
        pipe.set_progress_bar_config(disable=True)
        load_loras(pipe, options.loras)
        load_embeddings(pipe, options.embeddings)
        if options.attention_slicing:
            pipe.enable_attention_slicing()
        if options.cpu_offload and str(device).startswith("cuda"):
            pipe.enable_model_cpu_offload(device=device)
        elif pipe.unet.dtype != self.dtype:
            pipe.to(device, self.dtype)
        else:
            pipe.to(device)
        self.pipe = pipe
        self._embeds = None
        self._torch = torch

    @classmethod
    def from_options(cls, options: RefineOptions, device: str = "cpu") -> DiffusersRefiner:
        if options.checkpoint is None:
            raise InputError("--mode uhq needs an SD 1.5 checkpoint (--sd-checkpoint)")
        dtype = torch_dtype(options.precision, device)
        components = load_sd(options.checkpoint, options.config_dir, dtype)
        controlnets = [load_controlnet(c.model, components["unet"], dtype) for c in options.controlnets]
        return cls(components, controlnets, options, device, dtype)

    def _prompt_embeds(self):
        if self._embeds is None:
            o = self.options
            with self._torch.inference_mode():
                cond, uncond = self.pipe.encode_prompt(o.prompt, self.pipe._execution_device, 1, o.cfg > 1,
                                                       o.negative_prompt)
            self._embeds = (cond, uncond)
        return self._embeds

    def refine(self, batch: RefineBatch) -> list[np.ndarray]:
        from PIL import Image

        o, n = self.options, len(batch.images)
        cond, uncond = self._prompt_embeds()
        kwargs = dict(
            prompt_embeds=cond.expand(n, -1, -1),
            negative_prompt_embeds=uncond.expand(n, -1, -1) if uncond is not None else None,
            image=[Image.fromarray(im) for im in batch.images],
            mask_image=[Image.fromarray((np.clip(m, 0, 1) * 255).astype(np.uint8), "L") for m in batch.masks],
            strength=o.denoise, num_inference_steps=o.steps, guidance_scale=o.cfg,
            generator=generators(batch.seeds[0], n) if len(set(batch.seeds)) == 1 else
            [g for s in batch.seeds for g in generators(s, 1)],
            height=o.size, width=o.size, output_type="np",
        )
        if o.controlnets:
            ctrl = [[Image.fromarray(c) for c in per_cn] for per_cn in batch.controls]
            multi = len(o.controlnets) > 1
            kwargs.update(
                control_image=ctrl if multi else ctrl[0],
                controlnet_conditioning_scale=[c.weight for c in o.controlnets] if multi else o.controlnets[0].weight,
                control_guidance_start=[c.guidance_start for c in o.controlnets],
                control_guidance_end=[c.guidance_end for c in o.controlnets],
            )
        total = max(1, min(o.steps, int(o.steps * o.denoise)))

        def on_step(pipe, i, t, tensors):
            if batch.cancel is not None and batch.cancel():
                raise Cancelled("cancelled")
            if batch.step is not None:
                batch.step(i + 1, total)
            return {}

        with self._torch.inference_mode():
            images = self.pipe(callback_on_step_end=on_step, **kwargs).images
        return [np.clip(np.rint(im * 255), 0, 255).astype(np.uint8) for im in images]
