"""Forge's ``ControlNetForForgeOfficial`` always-on script, fake: takes its units (objects or
API dicts) from ``p.script_args[args_from:args_to]``, resolves the preprocessor and model like
Forge (exact names), reads ``unit.image`` like Forge's ``get_input_data``, records what it would
condition on in ``_fake.cn_calls`` and adds the detected maps to ``p.extra_result_images``. Its
errors, like every script's, are only reported by the runner: the crop is then sampled without
ControlNet."""

from __future__ import annotations

from copy import copy

import numpy as np
from lib_controlnet import external_code, global_state
from modules import _fake, scripts

global_state.update_controlnet_filenames()


class ControlNetForForgeOfficial(scripts.Script):
    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        n = external_code.get_max_models_num()
        return [external_code.ControlNetUnit(enabled=False, module="None", model="None") for _ in range(n)]

    def get_enabled_units(self, p):
        units = []
        for u in p.script_args[self.args_from:self.args_to]:
            if isinstance(u, dict):
                u = external_code.ControlNetUnit.from_dict(u)
            if u.enabled:
                units.append(copy(u))
        return units

    @staticmethod
    def get_input_data(p, unit) -> np.ndarray:
        """Forge's reading of ``unit.image`` (simple input mode): None -> the img2img input;
        otherwise a ``{"image": HWC, "mask": HWC}`` pair, indexed as Forge does: a bare array
        fails (IndexError), and a missing mask fails on an all-dark image such as a canny map
        with no edges (TypeError: '>' between None and int)."""
        if unit.image is None:
            return np.asarray(p.init_images[0].convert("RGB"))
        if (unit.image["image"] < 5).all() and (unit.image["mask"] > 5).any():
            image = unit.image["mask"]
        else:
            image = unit.image["image"]
        if not isinstance(image, np.ndarray):
            raise ValueError("controlnet is enabled but no input image is given")  # noqa: TRY004 - Forge's
        assert image.dtype == np.uint8, "HWC3: uint8 array expected"
        return image

    def process(self, p, *args, **kwargs):
        units = self.get_enabled_units(p)
        used = []
        for unit in units:
            preprocessor = global_state.get_preprocessor(unit.module)
            if preprocessor is None:  # what bound_check_params hits for an unknown name
                raise AttributeError("'NoneType' object has no attribute 'slider_resolution'")
            if not preprocessor.do_not_need_model:
                global_state.get_controlnet_filename(unit.model)
            image = self.get_input_data(p, unit)
            used.append(image)
            if unit.save_detected_map:
                from PIL import Image

                p.extra_result_images.append(Image.fromarray(image))
        _fake.cn_calls.append({"host": "forge", "p": p, "units": units, "images": used, "script": self})
