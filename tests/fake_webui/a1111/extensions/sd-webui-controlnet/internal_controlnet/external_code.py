"""sd-webui-controlnet v1.1.455 ``internal_controlnet/external_code.py`` (API version 3), fake.

``ControlNetUnit`` is a pydantic v1 model there: keyword construction, unknown keys ignored,
``enabled=False`` by default, enums from their string values, an unknown ``module`` rejected with
a ``ValueError`` (pydantic's ``ValidationError`` is one). Reimplemented without pydantic.
"""

from __future__ import annotations

from enum import Enum

from modules import _fake, shared


def get_api_version() -> int:
    return 3


class ResizeMode(Enum):
    RESIZE = "Just Resize"
    INNER_FIT = "Crop and Resize"
    OUTER_FIT = "Resize and Fill"

    def int_value(self):
        return {ResizeMode.RESIZE: 0, ResizeMode.INNER_FIT: 1, ResizeMode.OUTER_FIT: 2}[self]


class ControlMode(Enum):
    BALANCED = "Balanced"
    PROMPT = "My prompt is more important"
    CONTROL = "ControlNet is more important"


class HiResFixOption(Enum):
    BOTH = "Both"
    LOW_RES_ONLY = "Low res only"
    HIGH_RES_ONLY = "High res only"


resize_mode_aliases = {
    'Inner Fit (Scale to Fit)': 'Crop and Resize',
    'Outer Fit (Shrink to Fit)': 'Resize and Fill',
    'Scale to Fit (Inner Fit)': 'Crop and Resize',
    'Envelope (Outer Fit)': 'Resize and Fill',
}


def resize_mode_from_value(value) -> ResizeMode:
    if isinstance(value, str):
        return ResizeMode(resize_mode_aliases.get(value, value))
    if isinstance(value, int):
        return [e for e in ResizeMode][value] if value < len(ResizeMode) else ResizeMode.RESIZE
    return value


def control_mode_from_value(value) -> ControlMode:
    if isinstance(value, str):
        return ControlMode(value)
    if isinstance(value, int):
        return [e for e in ControlMode][value]
    return value


# preprocessor names (get_modules()) and their UI labels (get_modules(alias_names=True))
_MODULES = ["none", "canny", "depth", "depth_leres", "lineart", "lineart_coarse", "inpaint_only", "tile_resample",
            "openpose_faceonly", "mediapipe_face", "invert"]
_ALIASES = {"depth": "depth_midas", "lineart": "lineart_realistic"}


def get_modules(alias_names: bool = False) -> list[str]:
    return [_ALIASES.get(m, m) for m in _MODULES] if alias_names else list(_MODULES)


def get_modules_detail(alias_names: bool = False) -> dict:
    return {m: {"model_free": m == "none", "sliders": []} for m in get_modules(alias_names)}


_model_names: list[str] | None = None


def get_models(update: bool = False) -> list[str]:
    """Model names with their hash, e.g. "control_v11p_sd15_canny [d14c016b]" (scanned at startup;
    ``update=True`` rescans the model folders)."""
    global _model_names
    if update or _model_names is None:
        _model_names = [m for m in _fake.cn_models if m != "None"]
    return list(_model_names)


_DEFAULTS = {
    "input_mode": "simple", "use_preview_as_input": False, "batch_image_dir": "", "batch_mask_dir": "",
    "batch_input_gallery": None, "batch_mask_gallery": None, "generated_image": None, "mask_image": None,
    "hr_option": HiResFixOption.BOTH, "enabled": False, "module": "none", "model": "None", "weight": 1.0,
    "image": None, "resize_mode": ResizeMode.INNER_FIT, "low_vram": False, "processor_res": -1,
    "threshold_a": -1, "threshold_b": -1, "guidance_start": 0.0, "guidance_end": 1.0,
    "pixel_perfect": False, "control_mode": ControlMode.BALANCED, "inpaint_crop_input_image": True,
    "save_detected_map": True, "advanced_weighting": None, "effective_region_mask": None,
    "pulid_mode": "Fidelity", "union_control_type": "Unknown", "ipadapter_input": None, "mask": None,
    "animatediff_batch": False, "batch_modifiers": [], "batch_image_files": [], "batch_keyframe_idx": None,
}


class ControlNetUnit:
    def __init__(self, **data):
        for k, v in _DEFAULTS.items():
            setattr(self, k, list(v) if isinstance(v, list) else v)
        for k, v in data.items():
            if k in _DEFAULTS:  # extra="ignore"
                setattr(self, k, v)
        self.resize_mode = resize_mode_from_value(self.resize_mode)
        self.control_mode = control_mode_from_value(self.control_mode)
        self.hr_option = HiResFixOption(self.hr_option) if isinstance(self.hr_option, str) else self.hr_option
        if self.module not in _MODULES and self.module not in get_modules(alias_names=True):
            raise ValueError(f"1 validation error for ControlNetUnit\nmodule\n  Value error, "
                             f"module({self.module}) not found in supported modules.")
        if not 0.0 <= float(self.weight) <= 2.0:
            raise ValueError("1 validation error for ControlNetUnit\nweight\n  ensure this value is in [0, 2]")
        if not 0.0 <= float(self.guidance_start) <= float(self.guidance_end) <= 1.0:
            raise ValueError("guidance_start must be <= guidance_end, both in [0, 1]")

    @classmethod
    def from_dict(cls, d: dict) -> ControlNetUnit:
        return cls(**d)

    @staticmethod
    def infotext_fields():
        return ("module", "model", "weight", "resize_mode", "processor_res", "threshold_a", "threshold_b",
                "guidance_start", "guidance_end", "pixel_perfect", "control_mode", "hr_option")

    def dict(self):
        return {k: getattr(self, k) for k in _DEFAULTS}

    def __repr__(self):
        return f"ControlNetUnit(enabled={self.enabled}, module={self.module!r}, model={self.model!r})"


UiControlNetUnit = ControlNetUnit


def to_processing_unit(unit) -> ControlNetUnit:
    if isinstance(unit, dict):
        return ControlNetUnit.from_dict(unit)
    if isinstance(unit, ControlNetUnit):
        return unit
    return ControlNetUnit(**{k: getattr(unit, k) for k in _DEFAULTS if hasattr(unit, k)})  # duck-typed


def is_cn_script(script) -> bool:
    return script.title().lower() == "controlnet"


def find_cn_script(script_runner):
    if script_runner is None:
        return None
    for script in script_runner.alwayson_scripts:
        if is_cn_script(script):
            return script
    return None


def get_all_units_from(script_args) -> list[ControlNetUnit]:
    return [to_processing_unit(a) for a in script_args if a is not None and not isinstance(a, bool)]


def get_all_units(script_runner, script_args) -> list[ControlNetUnit]:
    cn_script = find_cn_script(script_runner)
    if cn_script:
        return get_all_units_from(script_args[cn_script.args_from:cn_script.args_to])
    return []


def get_all_units_in_processing(p) -> list[ControlNetUnit]:
    return get_all_units(p.scripts, p.script_args)


def get_single_unit_from(script_args, index=0):
    units = get_all_units_from(script_args)
    return units[index] if index < len(units) else None


def get_max_models_num():
    return shared.opts.data.get("control_net_unit_count", 3)


def update_cn_script(script_runner, script_args, cn_units):
    """Units into the CN slice, padded with disabled units; the other scripts' slices (on the
    runner's shared script objects) shifted. A no-op when CN is not in the runner."""
    script_args_type = type(script_args)
    assert script_args_type in (tuple, list), script_args_type
    updated_script_args = list(script_args)
    cn_script = find_cn_script(script_runner)
    if cn_script is None or len(script_args) < cn_script.args_from:
        return script_args
    cn_units = list(cn_units) + [ControlNetUnit(enabled=False)] * max(get_max_models_num() - len(cn_units), 0)
    diff = 0
    for script in script_runner.alwayson_scripts:
        if script is cn_script:
            diff = len(cn_units) - (cn_script.args_to - cn_script.args_from)
            updated_script_args[script.args_from:script.args_to] = cn_units
            script.args_to = script.args_from + len(cn_units)
        else:
            script.args_from += diff
            script.args_to += diff
    return script_args_type(updated_script_args)


def update_cn_script_in_processing(p, cn_units, **_kwargs):
    p.script_args = update_cn_script(p.scripts, p.script_args_value, cn_units)


def pixel_perfect_resolution(image, target_H: int, target_W: int, resize_mode: ResizeMode) -> int:
    raw_H, raw_W = image.shape[:2]
    k0, k1 = float(target_H) / raw_H, float(target_W) / raw_W
    est = min(k0, k1) if resize_mode == ResizeMode.OUTER_FIT else max(k0, k1)
    return round(est * float(min(raw_H, raw_W)))
