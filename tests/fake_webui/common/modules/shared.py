"""``modules/shared.py`` of WebUI 1.10.1: opts, cmd_opts, state, and the ``sd_model`` property.

``shared.sd_model`` is a module-level property (the WebUI swaps the module's class): reading it
returns the loaded model, or None when no checkpoint could be loaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import types

from modules import _fake, paths, shared_state
from modules.options import OptionHTML, OptionInfo, Options, options_section  # noqa: F401 (re-exported)
from modules.shared_cmd_options import cmd_opts  # noqa: F401 (re-exported: the parsed command line)

parser = argparse.ArgumentParser()  # preload.py receives this one (cmd_args.parser)

# A subset of shared_options.py with the 1.10.1 defaults: the ones generation reads.
options_templates: dict[str, OptionInfo] = {
    "sd_model_checkpoint": OptionInfo(None, "Stable Diffusion checkpoint"),
    "sd_vae": OptionInfo("Automatic", "SD VAE"),
    "samples_save": OptionInfo(True, "Always save all generated images"),
    "samples_format": OptionInfo("png", "File format for images"),
    "outdir_samples": OptionInfo("", "Output directory for images; if empty, defaults to three directories below"),
    "outdir_img2img_samples": OptionInfo(os.path.join(paths.data_path, "outputs", "img2img-images"),
                                         "Output directory for img2img images"),
    "outdir_init_images": OptionInfo(os.path.join(paths.data_path, "outputs", "init-images"),
                                     "Directory for saving init images when using img2img"),
    "save_init_img": OptionInfo(False, "Save init images when using img2img"),
    "img2img_color_correction": OptionInfo(False, "Apply color correction to img2img results to match original colors."),
    "img2img_fix_steps": OptionInfo(False, "With img2img, do exactly the amount of steps the slider specifies."),
    "img2img_extra_noise": OptionInfo(0.0, "Extra noise multiplier for img2img and hires fix"),
    "img2img_background_color": OptionInfo("#ffffff", "With img2img, fill transparent parts of the input image"),
    "initial_noise_multiplier": OptionInfo(1.0, "Noise multiplier for img2img"),
    "inpainting_mask_weight": OptionInfo(1.0, "Inpainting conditioning mask strength"),
    "return_mask": OptionInfo(False, "For inpainting, include the greyscale mask in results for web"),
    "return_mask_composite": OptionInfo(False, "For inpainting, include masked composite in results for web"),
    "return_grid": OptionInfo(True, "Show grid in gallery"),
    "grid_only_if_multiple": OptionInfo(True, "Do not save grids consisting of one picture"),
    "face_restoration": OptionInfo(False, "Restore faces"),
    "tiling": OptionInfo(False, "Tiling"),
    "persistent_cond_cache": OptionInfo(True, "Persistent cond cache"),
    "s_min_uncond": OptionInfo(0.0, "Negative Guidance minimum sigma"),
    "s_churn": OptionInfo(0.0, "sigma churn"),
    "s_tmin": OptionInfo(0.0, "sigma tmin"),
    "s_tmax": OptionInfo(0.0, "sigma tmax"),
    "s_noise": OptionInfo(1.0, "sigma noise"),
    "hide_samplers": OptionInfo([], "Hide samplers in user interface"),
    "CLIP_stop_at_last_layers": OptionInfo(1, "Clip skip"),
    "live_previews_enable": OptionInfo(True, "Show live previews of the created image"),
    "disable_all_extensions": OptionInfo("none", "Disable all extensions (preserves the list of enabled extensions)"),
    "eta_noise_seed_delta": OptionInfo(0, "Eta noise seed delta"),
}

opts = Options(dict(options_templates), set())

state = shared_state.State()

demo = None  # the gr.Blocks of the UI (None under --nowebui)
device = None  # set by modules.devices (kept in sync there)
hide_dirs = {"visible": True}
sd_upscalers: list = []


class _TotalTQDM:
    def __init__(self):
        self.cleared = 0

    def reset(self):
        pass

    def update(self):
        pass

    def updateTotal(self, new_total):
        pass

    def clear(self):
        self.cleared += 1


total_tqdm = _TotalTQDM()


class Shared(types.ModuleType):
    @property
    def sd_model(self):
        from modules import sd_models

        return sd_models.model_data.get_sd_model()

    @sd_model.setter
    def sd_model(self, value):
        from modules import sd_models

        sd_models.model_data.set_sd_model(value)


sys.modules[__name__].__class__ = Shared
assert _fake  # the config module is imported first
