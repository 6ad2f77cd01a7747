"""sd-webui-controlnet v1.1.455 ``internal_controlnet/external_code.py`` (API version 3), fake.

``ControlNetUnit`` is a pydantic v1 model there (``internal_controlnet/args.py``), and here too
(``pydantic.v1`` under pydantic 2, as in a WebUI with pydantic 1.10): keyword construction, unknown
keys ignored, ``enabled=False`` by default, enums from their string values, an unknown ``module``
or ``model`` rejected with a ``ValidationError`` (a ``ValueError``).
"""

# ruff: noqa: UP006, UP035, UP045 - pydantic v1 reads these annotations, written as CN writes them

from enum import Enum
from typing import Any, List, Optional

try:
    from pydantic.v1 import BaseModel, Field, root_validator, validator
except ImportError:  # pydantic 1.x, as A1111 pins it
    from pydantic import BaseModel, Field, root_validator, validator

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


def _match_module(value) -> bool:
    return value in _MODULES or value in get_modules(alias_names=True)


def _match_model(value) -> bool:
    return value == "None" or value in get_models()


class ControlNetUnit(BaseModel):
    """CN's ``internal_controlnet/args.py`` unit: a pydantic v1 model (``Config.extra = "ignore"``,
    arbitrary types), so ``__fields__`` lists the accepted keywords and validation errors are
    ``ValueError`` subclasses."""

    class Config:  # the fake is imported again for every test: validators may be redefined
        arbitrary_types_allowed = True
        extra = "ignore"

    is_ui: bool = False
    input_mode: str = "simple"
    batch_images: Optional[Any] = None
    output_dir: str = ""
    loopback: bool = False
    enabled: bool = False
    module: str = "none"
    model: str = "None"
    weight: float = Field(1.0, ge=0.0, le=2.0)
    image: Optional[Any] = None
    resize_mode: ResizeMode = ResizeMode.INNER_FIT
    low_vram: bool = False
    processor_res: int = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = Field(0.0, ge=0.0, le=1.0)
    guidance_end: float = Field(1.0, ge=0.0, le=1.0)
    pixel_perfect: bool = False
    control_mode: ControlMode = ControlMode.BALANCED
    inpaint_crop_input_image: bool = True
    hr_option: HiResFixOption = HiResFixOption.BOTH
    save_detected_map: bool = True
    advanced_weighting: Optional[List[float]] = None
    effective_region_mask: Optional[Any] = None
    pulid_mode: str = "Fidelity"
    union_control_type: str = "Unknown"
    ipadapter_input: Optional[Any] = None
    mask: Optional[Any] = None

    @validator("module", always=True, pre=True, allow_reuse=True)
    def check_module(cls, value):
        if not _match_module(value):
            raise ValueError(f"module({value}) not found in supported modules.")
        return value

    @validator("model", always=True, pre=True, allow_reuse=True)
    def check_model(cls, value):
        if not _match_model(value):
            raise ValueError(f"model({value}) not found in supported models.")
        return value

    @validator("resize_mode", always=True, pre=True, allow_reuse=True)
    def check_resize_mode(cls, value):
        return resize_mode_from_value(value)

    @root_validator(allow_reuse=True)
    def guidance_check(cls, values):
        start, end = values.get("guidance_start"), values.get("guidance_end")
        if start is not None and end is not None and start > end:
            raise ValueError(f"guidance_start({start}) > guidance_end({end})")
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "ControlNetUnit":
        return cls(**values)

    @staticmethod
    def infotext_fields():
        return ("module", "model", "weight", "resize_mode", "processor_res", "threshold_a", "threshold_b",
                "guidance_start", "guidance_end", "pixel_perfect", "control_mode")


_DEFAULTS = tuple(ControlNetUnit.__fields__)


UiControlNetUnit = ControlNetUnit


def to_processing_unit(unit) -> "ControlNetUnit":
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


def get_all_units_from(script_args) -> "list[ControlNetUnit]":
    return [to_processing_unit(a) for a in script_args if a is not None and not isinstance(a, bool)]


def get_all_units(script_runner, script_args) -> "list[ControlNetUnit]":
    cn_script = find_cn_script(script_runner)
    if cn_script:
        return get_all_units_from(script_args[cn_script.args_from:cn_script.args_to])
    return []


def get_all_units_in_processing(p) -> "list[ControlNetUnit]":
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
