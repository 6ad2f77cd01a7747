"""sd-webui-controlnet's always-on script, fake: reads its units from ``p.script_args[args_from:
args_to]``, checks them like CN does, records what it would condition on in ``_fake.cn_calls``,
and appends the detected maps to the result (unless ``save_detected_map=False`` /
``control_net_no_detectmap``).

Its model cache behaves like CN 1.1.455's: ``Script.model_cache`` is one class-wide OrderedDict
(``control_net_model_cache_size`` entries, oldest evicted), and ``process`` clears all of it
whenever the script object's own ``latest_model_hash`` (``""`` on a new object) differs from the
SD model's hash, then stores the hash on ``self``. Every build from disk is recorded in
``_fake.cn_model_loads``.
"""

from collections import OrderedDict
from typing import ClassVar

import numpy as np
from internal_controlnet import external_code
from modules import _fake, scripts, shared


class Script(scripts.Script):
    model_cache: ClassVar[OrderedDict] = OrderedDict()  # shared by every copy of the script

    def __init__(self) -> None:
        super().__init__()
        self.latest_model_hash = ""
        self.detected_map = []

    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [external_code.ControlNetUnit() for _ in range(external_code.get_max_models_num())]

    def get_enabled_units(self, p):
        units = [u for u in external_code.get_all_units_in_processing(p) if u.enabled]
        for u in units:
            if u.model not in external_code.get_models():
                raise RuntimeError(f"ControlNet model not found: {u.model}")
        return units

    @staticmethod
    def clear_control_model_cache():
        Script.model_cache.clear()

    @staticmethod
    def load_control_model(model):
        if model in Script.model_cache:
            return Script.model_cache[model]
        size = shared.opts.data.get("control_net_model_cache_size", 2)
        if len(Script.model_cache) > 0 and len(Script.model_cache) >= size:
            Script.model_cache.popitem(last=False)
        _fake.cn_model_loads.append(model)  # what costs 723 MB read + build in the real one
        net = object()
        if size > 0:
            Script.model_cache[model] = net
        return net

    @staticmethod
    def input_image(p, unit) -> np.ndarray:
        image = unit.image
        if isinstance(image, dict):
            image = image.get("image")
        elif isinstance(image, (list, tuple)):
            image = image[0]
        if image is None:  # the img2img input (cropped like the inpaint region)
            return np.asarray(p.init_images[0].convert("RGB"))
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"ControlNet input image must be an HWC uint8 array, got {type(image)}")
        return image

    def process(self, p, *args, **kwargs):
        units = self.get_enabled_units(p)
        if not units:
            return
        if self.latest_model_hash != p.sd_model.sd_model_hash:
            self.clear_control_model_cache()
        self.latest_model_hash = p.sd_model.sd_model_hash
        for u in units:
            self.load_control_model(u.model)
        used = [self.input_image(p, u) for u in units]
        self.detected_map = [(u, im) for u, im in zip(units, used) if u.save_detected_map]
        _fake.cn_calls.append({"host": "a1111", "p": p, "units": units, "images": used, "script": self})

    def postprocess(self, p, processed, *args):
        if shared.opts.data.get("control_net_no_detectmap", False):
            return
        from PIL import Image

        processed.images.extend(Image.fromarray(im) for _, im in getattr(self, "detected_map", []))
