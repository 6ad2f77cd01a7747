"""``modules/processing.py`` of WebUI 1.10.1, with a deterministic stand-in for diffusion.

Kept from the WebUI: the dataclass constructors (unknown keyword -> TypeError), ``p.scripts`` /
``p.script_args`` setters that run the always-on ``setup`` (UI values win unless ``p.is_api``),
``override_settings`` applied and restored around the run, ``shared.sd_model is None`` failing,
the interrupt checks, the mask handling (binarise, blur, invert, "whole picture" vs "only masked"
crop and paste back, overlay of the original outside the mask), the settings that leak into
img2img (``save_init_img``, ``img2img_color_correction``, ``samples_save``, ``return_mask``),
always-on script hooks, and the output size (init size with ``inpaint_full_res``, else
``width`` x ``height``).

The "diffusion": every pixel the model repaints becomes the (filled) init pixel + ``FAKE_DELTA``;
the overlay then restores the original where the mask is 0, so the result differs from the init
image exactly inside the (blurred) mask.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from modules import _fake, devices, images, scripts, sd_models, sd_samplers, shared
from modules.shared import opts, state

FAKE_DELTA = 40  # what the fake sampler adds to repainted pixels
FAKE_COLOR_CORRECTION = 7  # what opts.img2img_color_correction adds on top (a leaked user setting)


def create_binary_mask(image, round=True):
    if image.mode == 'RGBA' and image.getextrema()[-1] != (255, 255):
        if round:
            image = image.split()[-1].convert("L").point(lambda x: 255 if x > 128 else 0)
        else:
            image = image.split()[-1].convert("L")
    else:
        image = image.convert('L')
    return image


def get_fixed_seed(seed):
    if seed == '' or seed is None:
        seed = -1
    elif isinstance(seed, str):
        try:
            seed = int(seed)
        except ValueError:
            seed = -1
    if seed == -1:
        return int(random.randrange(4294967294))
    return seed


def fix_seed(p):
    p.seed = get_fixed_seed(p.seed)
    p.subseed = get_fixed_seed(p.subseed)


def apply_overlay(image, paste_loc, index, overlays):
    if overlays is None or index >= len(overlays):
        return image
    overlay = overlays[index]
    if paste_loc is not None:
        x, y, w, h = paste_loc
        base_image = Image.new('RGBA', (overlay.width, overlay.height))
        image = images.resize_image(1, image, w, h)
        base_image.paste(image, (x, y))
        image = base_image
    # alpha_composite of the original (alpha 255 outside the mask) over the result, in numpy
    top = np.asarray(overlay.convert("RGBA"), np.float32)
    bottom = np.asarray(image.convert("RGBA"), np.float32)
    a = top[..., 3:4] / 255.0
    out = top[..., :3] * a + bottom[..., :3] * (1 - a)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def _crop_region(mask: np.ndarray, pad: int, width: int, height: int):
    """masking.get_crop_region_v2 + expand_crop_region: the mask's bounding box plus padding,
    widened to the ``width:height`` aspect; None for a blank mask."""
    ys, xs = np.nonzero(mask > 0)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    x1, y1 = max(0, xs.min() - pad), max(0, ys.min() - pad)
    x2, y2 = min(w, xs.max() + 1 + pad), min(h, ys.max() + 1 + pad)
    ratio_crop = (x2 - x1) / (y2 - y1)
    ratio_proc = width / height
    if ratio_crop > ratio_proc:
        want = int((x2 - x1) / ratio_proc)
        diff = want - (y2 - y1)
        y1, y2 = max(0, y1 - diff // 2), min(h, y2 + diff - diff // 2)
    else:
        want = int((y2 - y1) * ratio_proc)
        diff = want - (x2 - x1)
        x1, x2 = max(0, x1 - diff // 2), min(w, x2 + diff - diff // 2)
    return x1, y1, x2, y2


@dataclass(repr=False)
class StableDiffusionProcessing:
    sd_model: object = None
    outpath_samples: str = None
    outpath_grids: str = None
    prompt: str = ""
    prompt_for_display: str = None
    negative_prompt: str = ""
    styles: list = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    seed_enable_extras: bool = True
    sampler_name: str = None
    if _fake.CONFIG["sd_schedulers"]:  # WebUI >= 1.9
        scheduler: str = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    if _fake.CONFIG["forge"]:
        distilled_cfg_scale: float = 3.5
    width: int = 512
    height: int = 512
    restore_faces: bool = None
    tiling: bool = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict = None
    overlay_images: list = None
    eta: float = None
    do_not_reload_embeddings: bool = False
    denoising_strength: float = None
    ddim_discretize: str = None
    s_min_uncond: float = None
    s_churn: float = None
    s_tmax: float = None
    s_tmin: float = None
    s_noise: float = None
    override_settings: dict = None
    override_settings_restore_afterwards: bool = True
    sampler_index: int = None
    refiner_checkpoint: str = None
    refiner_switch_at: float = None
    token_merging_ratio = 0
    token_merging_ratio_hr = 0
    disable_extra_networks: bool = False
    firstpass_image: Any = None

    scripts_value: Any = field(default=None, init=False)
    script_args_value: list = field(default=None, init=False)
    scripts_setup_complete: bool = field(default=False, init=False)

    cached_uc: ClassVar[list] = [None, None]
    cached_c: ClassVar[list] = [None, None]

    comments: dict = None
    sampler: Any = field(default=None, init=False)
    is_using_inpainting_conditioning: bool = field(default=False, init=False)
    paste_to: tuple = field(default=None, init=False)
    is_hr_pass: bool = field(default=False, init=False)
    c: tuple = field(default=None, init=False)
    uc: tuple = field(default=None, init=False)
    color_corrections: list = field(default=None, init=False)
    all_prompts: list = field(default=None, init=False)
    all_negative_prompts: list = field(default=None, init=False)
    all_seeds: list = field(default=None, init=False)
    all_subseeds: list = field(default=None, init=False)
    iteration: int = field(default=0, init=False)
    main_prompt: str = field(default=None, init=False)
    main_negative_prompt: str = field(default=None, init=False)
    prompts: list = field(default=None, init=False)
    negative_prompts: list = field(default=None, init=False)
    seeds: list = field(default=None, init=False)
    subseeds: list = field(default=None, init=False)
    extra_network_data: dict = field(default=None, init=False)
    user: str = field(default=None, init=False)
    sd_model_name: str = field(default=None, init=False)
    sd_model_hash: str = field(default=None, init=False)
    sd_vae_name: str = field(default=None, init=False)
    sd_vae_hash: str = field(default=None, init=False)
    is_api: bool = field(default=False, init=False)
    extra_result_images: list = field(default=None, init=False)

    def __post_init__(self):
        if self.sampler_index is not None:
            print("sampler_index argument for StableDiffusionProcessing does not do anything; use sampler_name",
                  file=sys.stderr)
        self.comments = {}
        if self.styles is None:
            self.styles = []
        self.sampler_noise_scheduler_override = None
        self.s_min_uncond = self.s_min_uncond if self.s_min_uncond is not None else opts.s_min_uncond
        self.s_churn = self.s_churn if self.s_churn is not None else opts.s_churn
        self.s_tmin = self.s_tmin if self.s_tmin is not None else opts.s_tmin
        self.s_tmax = (self.s_tmax if self.s_tmax is not None else opts.s_tmax) or float('inf')
        self.s_noise = self.s_noise if self.s_noise is not None else opts.s_noise
        self.extra_generation_params = self.extra_generation_params or {}
        self.override_settings = self.override_settings or {}
        self.script_args = self.script_args or {}
        self.refiner_checkpoint_info = None
        self.extra_result_images = []
        if not self.seed_enable_extras:
            self.subseed = -1
            self.subseed_strength = 0
            self.seed_resize_from_h = 0
            self.seed_resize_from_w = 0
        self.cached_uc = StableDiffusionProcessing.cached_uc
        self.cached_c = StableDiffusionProcessing.cached_c
        self.closed = False  # fake-only: set by close()

    @property
    def sd_model(self):  # noqa: F811 - replaces the field's default, as in the WebUI
        return shared.sd_model

    @sd_model.setter
    def sd_model(self, value):
        pass

    @property
    def scripts(self):
        return self.scripts_value

    @scripts.setter
    def scripts(self, value):
        self.scripts_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    @property
    def script_args(self):
        return self.script_args_value

    @script_args.setter
    def script_args(self, value):
        self.script_args_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    def setup_scripts(self):
        self.scripts_setup_complete = True
        self.fake_setup_is_ui = not self.is_api  # fake-only: how the always-on setup() ran
        self.scripts.setup_scrips(self, is_ui=not self.is_api)

    def comment(self, text):
        self.comments[text] = 1

    def init(self, all_prompts, all_seeds, all_subseeds):
        pass

    def close(self):
        self.sampler = None
        self.c = None
        self.uc = None
        self.closed = True
        if not opts.persistent_cond_cache:
            StableDiffusionProcessing.cached_c = [None, None]
            StableDiffusionProcessing.cached_uc = [None, None]

    def save_samples(self) -> bool:
        return opts.samples_save and not self.do_not_save_samples and not state.interrupted and not state.skipped

    def setup_prompts(self):
        self.all_prompts = self.batch_size * self.n_iter * [self.prompt]
        self.all_negative_prompts = self.batch_size * self.n_iter * [self.negative_prompt]
        self.main_prompt = self.all_prompts[0]
        self.main_negative_prompt = self.all_negative_prompts[0]

    def fake_sample(self) -> list:
        raise NotImplementedError()


@dataclass(repr=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = None
    resize_mode: int = 0
    denoising_strength: float = 0.75
    image_cfg_scale: float = None
    mask: Any = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float = None
    latent_mask: Any = None
    force_task_id: str = None

    image_mask: Any = field(default=None, init=False)
    nmask: Any = field(default=None, init=False)
    image_conditioning: Any = field(default=None, init=False)
    init_img_hash: str = field(default=None, init=False)
    mask_for_overlay: Any = field(default=None, init=False)
    init_latent: Any = field(default=None, init=False)

    def __post_init__(self):
        super().__post_init__()
        self.image_mask = self.mask
        self.mask = None
        self.initial_noise_multiplier = (opts.initial_noise_multiplier if self.initial_noise_multiplier is None
                                         else self.initial_noise_multiplier)
        if self.mask_blur is not None:  # a property in the WebUI: sets both directions
            self.mask_blur_x = self.mask_blur_y = self.mask_blur

    def init(self, all_prompts, all_seeds, all_subseeds):
        self.extra_generation_params["Denoising strength"] = self.denoising_strength
        crop_region = None
        image_mask = self.image_mask
        if image_mask is not None:
            image_mask = create_binary_mask(image_mask, round=self.mask_round)
            if self.inpainting_mask_invert:
                image_mask = ImageOps.invert(image_mask)
            blur = max(self.mask_blur_x, self.mask_blur_y)
            if blur > 0:
                image_mask = image_mask.filter(ImageFilter.GaussianBlur(blur))
            if self.inpaint_full_res:
                self.mask_for_overlay = image_mask
                crop_region = _crop_region(np.asarray(image_mask), self.inpaint_full_res_padding,
                                           self.width, self.height)
                if crop_region is None:  # blank mask: the WebUI falls back to plain img2img
                    image_mask = None
                    self.mask_for_overlay = None
                    self.inpaint_full_res = False
                else:
                    x1, y1, x2, y2 = crop_region
                    image_mask = images.resize_image(2, image_mask.crop(crop_region), self.width, self.height)
                    self.paste_to = (x1, y1, x2 - x1, y2 - y1)
            else:
                image_mask = images.resize_image(self.resize_mode, image_mask, self.width, self.height)
                np_mask = np.clip(np.asarray(image_mask).astype(np.float32) * 2, 0, 255).astype(np.uint8)
                self.mask_for_overlay = Image.fromarray(np_mask)
            self.overlay_images = []
        latent_mask = self.latent_mask if self.latent_mask is not None else image_mask

        add_color_corrections = opts.img2img_color_correction and self.color_corrections is None
        if add_color_corrections:
            self.color_corrections = []
        work = []
        for img in self.init_images:
            if opts.save_init_img:
                images.save_image(img, path=opts.outdir_init_images, basename=None, forced_filename="init",
                                  save_to_dirs=False)
            image = img.convert("RGB")
            if crop_region is None and self.resize_mode != 3:
                image = images.resize_image(self.resize_mode, image, self.width, self.height)
            if image_mask is not None:
                keep = np.asarray(ImageOps.invert(self.mask_for_overlay.convert('L')))
                self.overlay_images.append(Image.fromarray(np.dstack([np.asarray(image), keep]), "RGBA"))
            if crop_region is not None:
                image = images.resize_image(2, image.crop(crop_region), self.width, self.height)
            if image_mask is not None and self.inpainting_fill != 1:
                arr = np.asarray(image).copy()
                m = np.asarray(latent_mask.convert("L")) > 127
                if self.inpainting_fill == 0:  # "fill": the masked area painted over
                    arr[m] = arr[~m].mean(axis=0).astype(np.uint8) if (~m).any() else 127
                else:  # latent noise / latent nothing: the original content is gone
                    arr[m] = 0
                image = Image.fromarray(arr)
            if add_color_corrections:
                self.color_corrections.append(True)
            work.append(image)
        self._work = work
        self._latent_mask = latent_mask

    def fake_sample(self):
        steps = self.steps if opts.img2img_fix_steps else max(1, int(self.steps * self.denoising_strength))
        state.sampling_steps = steps
        hook = _fake.hooks.get("before_sample")
        if hook is not None:
            hook(self)
        step_hook = _fake.hooks.get("sample_step")
        finished = True
        for step in range(steps):  # the sampler's per-step callback checks the interrupt flags
            if state.interrupted or state.skipped:  # the WebUI stops sampling: a partial image
                finished = False
                break
            state.sampling_step = step + 1
            if step_hook is not None:
                step_hook(self, step + 1, steps)
        finished = finished and not (state.interrupted or state.skipped)
        out = []
        for image in self._work:
            arr = np.asarray(image).astype(np.int16)
            if finished:  # else: stopped early, nothing changed (the partial image of the fake)
                arr = arr + FAKE_DELTA
            out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
        return out


class Processed:
    def __init__(self, p, images_list, seed=-1, info="", subseed=None, all_prompts=None, all_negative_prompts=None,
                 all_seeds=None, all_subseeds=None, index_of_first_image=0, infotexts=None, comments=""):
        self.images = images_list
        self.prompt = p.prompt
        self.negative_prompt = p.negative_prompt
        self.seed = seed
        self.subseed = subseed
        self.info = info
        self.comments = "".join(f"{comment}\n" for comment in p.comments)
        self.width = p.width
        self.height = p.height
        self.sampler_name = p.sampler_name
        self.cfg_scale = p.cfg_scale
        self.steps = p.steps
        self.batch_size = p.batch_size
        self.denoising_strength = getattr(p, 'denoising_strength', None)
        self.extra_generation_params = p.extra_generation_params
        self.index_of_first_image = index_of_first_image
        self.all_prompts = all_prompts or p.all_prompts or [self.prompt]
        self.all_negative_prompts = all_negative_prompts or p.all_negative_prompts or [self.negative_prompt]
        self.all_seeds = all_seeds or p.all_seeds or [self.seed]
        self.all_subseeds = all_subseeds or p.all_subseeds or [self.subseed]
        self.infotexts = infotexts or [info] * len(images_list)

    def js(self):
        return json.dumps({"prompt": self.prompt, "seed": self.seed, "all_seeds": self.all_seeds,
                           "width": self.width, "height": self.height, "sampler_name": self.sampler_name,
                           "steps": self.steps, "index_of_first_image": self.index_of_first_image,
                           "infotexts": self.infotexts})


def _infotext(p, seed):
    params = {"Steps": p.steps, "Sampler": p.sampler_name, "Schedule type": getattr(p, "scheduler", None),
              "CFG scale": p.cfg_scale, "Seed": seed, "Size": f"{p.width}x{p.height}",
              "Model": p.sd_model_name, "Denoising strength": p.denoising_strength, **p.extra_generation_params}
    text = ", ".join(f"{k}: {v}" for k, v in params.items() if v is not None)
    return f"{p.prompt}\nNegative prompt: {p.negative_prompt}\n{text}"


def process_images(p: StableDiffusionProcessing) -> Processed:
    from modules import call_queue

    if p.scripts is not None:
        p.scripts.before_process(p)

    stored_opts = {k: opts.data[k] if k in opts.data else opts.get_default(k) for k in p.override_settings
                   if k in opts.data}
    record = {"p": p, "lock_held": _fake.lock_held(call_queue.queue_lock), "override_settings": dict(p.override_settings),
              "opts_during": None, "sampler_name": None, "scheduler": None, "result": None}
    _fake.calls.append(record)
    try:
        if sd_models.checkpoint_aliases.get(p.override_settings.get('sd_model_checkpoint')) is None:
            p.override_settings.pop('sd_model_checkpoint', None)
            sd_models.reload_model_weights()
        for k, v in p.override_settings.items():
            opts.set(k, v, is_api=True, run_callbacks=False)
        record["opts_during"] = {k: opts.data.get(k) for k in record["override_settings"]}
        if _fake.CONFIG["sd_schedulers"]:
            sd_samplers.fix_p_invalid_sampler_and_scheduler(p)
        record["sampler_name"], record["scheduler"] = p.sampler_name, getattr(p, "scheduler", None)
        res = process_images_inner(p)
        record["result"] = res
    finally:
        if p.override_settings_restore_afterwards:
            for k, v in stored_opts.items():
                setattr(opts, k, v)
    return res


def process_images_inner(p: StableDiffusionProcessing) -> Processed:
    assert p.prompt is not None
    devices.torch_gc()
    seed = get_fixed_seed(p.seed)
    subseed = get_fixed_seed(p.subseed)
    if p.restore_faces is None:
        p.restore_faces = opts.face_restoration
    if p.tiling is None:
        p.tiling = opts.tiling

    if _fake.CONFIG["forge"]:  # Forge loads the selected checkpoint here (ValueError when there is none)
        sd_models.forge_model_reload()
    # A1111: AttributeError: 'NoneType' object has no attribute 'sd_checkpoint_info' without a model
    p.sd_model_name = shared.sd_model.sd_checkpoint_info.name_for_extra
    p.sd_model_hash = shared.sd_model.sd_model_hash

    if not _fake.CONFIG["sd_schedulers"]:  # 1.8: create_sampler asserts on the name
        assert sd_samplers.find_sampler_config(p.sampler_name) is not None, f'bad sampler name: {p.sampler_name}'

    p.setup_prompts()
    p.all_seeds = [int(seed) + (x if p.subseed_strength == 0 else 0) for x in range(len(p.all_prompts))]
    p.all_subseeds = [int(subseed) + x for x in range(len(p.all_prompts))]

    if p.scripts is not None:
        p.scripts.process(p)

    output_images = []
    infotexts = []
    p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
    if state.job_count == -1:
        state.job_count = p.n_iter

    for n in range(p.n_iter):
        p.iteration = n
        if state.skipped:
            state.skipped = False
        if state.interrupted or state.stopping_generation:
            break
        p.prompts = p.all_prompts[n * p.batch_size:(n + 1) * p.batch_size]
        p.negative_prompts = p.all_negative_prompts[n * p.batch_size:(n + 1) * p.batch_size]
        p.seeds = p.all_seeds[n * p.batch_size:(n + 1) * p.batch_size]
        p.subseeds = p.all_subseeds[n * p.batch_size:(n + 1) * p.batch_size]
        if p.scripts is not None:
            p.scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
            p.scripts.process_before_every_sampling(p, batch_number=n, prompts=p.prompts, seeds=p.seeds,
                                                    subseeds=p.subseeds)
        samples = p.fake_sample()
        if p.scripts is not None:
            p.scripts.postprocess_batch(p, samples, batch_number=n)
        save_samples = p.save_samples()
        for i, image in enumerate(samples):
            if p.scripts is not None:
                pp = scripts.PostprocessImageArgs(image)
                p.scripts.postprocess_image(p, pp)
                image = pp.image
            if p.color_corrections is not None and i < len(p.color_corrections):
                image = Image.fromarray(np.clip(np.asarray(image).astype(np.int16) + FAKE_COLOR_CORRECTION,
                                                0, 255).astype(np.uint8))
            image = apply_overlay(image, p.paste_to, i, p.overlay_images)
            hook = _fake.hooks.get("after_sample")
            if hook is not None:
                image = hook(p, image) or image
            text = _infotext(p, p.seeds[i])
            if save_samples:
                images.save_image(image, p.outpath_samples or opts.outdir_img2img_samples, "", p.seeds[i],
                                  p.prompts[i], opts.samples_format, info=text, p=p)
            output_images.append(image)
            infotexts.append(text)
            if getattr(p, "image_mask", None) is not None and opts.return_mask:
                output_images.append(p.image_mask)
                infotexts.append(text)
        state.nextjob()

    if p.extra_result_images:
        output_images.extend(p.extra_result_images)
    p.color_corrections = None
    res = Processed(p, output_images, p.all_seeds[0], infotexts[0] if infotexts else "", p.all_subseeds[0],
                    index_of_first_image=0, infotexts=infotexts)
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    return res
