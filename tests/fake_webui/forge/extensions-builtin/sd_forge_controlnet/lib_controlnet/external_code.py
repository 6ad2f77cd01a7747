"""Forge's built-in ControlNet ``lib_controlnet/external_code.py`` (API version 2), fake.

``ControlNetUnit`` is a dataclass: ``enabled=True`` by default, unknown keywords -> TypeError, no
``low_vram``. No ``find_cn_script`` / ``update_cn_script_in_processing`` / ``get_models`` /
``get_modules``: the lists are in ``global_state``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from modules import shared


def get_api_version() -> int:
    return 2


class ControlMode(Enum):
    BALANCED = "Balanced"
    PROMPT = "My prompt is more important"
    CONTROL = "ControlNet is more important"


class ResizeMode(Enum):
    RESIZE = "Just Resize"
    INNER_FIT = "Crop and Resize"
    OUTER_FIT = "Resize and Fill"

    def int_value(self):
        return {ResizeMode.RESIZE: 0, ResizeMode.INNER_FIT: 1, ResizeMode.OUTER_FIT: 2}[self]


class HiResFixOption(Enum):
    BOTH = "Both"
    LOW_RES_ONLY = "Low res only"
    HIGH_RES_ONLY = "High res only"


def resize_mode_from_value(value) -> ResizeMode:
    if isinstance(value, str):
        return ResizeMode(value)
    if isinstance(value, int):
        return [e for e in ResizeMode][value] if value < len(ResizeMode) else ResizeMode.RESIZE
    return value


def control_mode_from_value(value) -> ControlMode:
    if isinstance(value, str):
        return ControlMode(value)
    if isinstance(value, int):
        return [e for e in ControlMode][value]
    return value


@dataclass
class ControlNetUnit:
    input_mode: str = "simple"
    use_preview_as_input: bool = False
    batch_image_dir: str = ''
    batch_mask_dir: str = ''
    batch_input_gallery: Any = None
    batch_mask_gallery: Any = None
    generated_image: Any = None
    mask_image: Any = None
    hr_option: Any = HiResFixOption.BOTH
    enabled: bool = True
    module: str = "None"
    model: str = "None"
    weight: float = 1.0
    image: Any = None
    resize_mode: Any = ResizeMode.INNER_FIT
    processor_res: int = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: Any = ControlMode.BALANCED
    save_detected_map: bool = True

    @staticmethod
    def from_dict(d: dict) -> ControlNetUnit:
        """API dicts; as in Forge (2025), ``image`` / ``mask_image`` must be ``{"image": ...}`` dicts."""
        unit = ControlNetUnit(**{k: v for k, v in d.items() if k in {f.name for f in fields(ControlNetUnit)}})
        if isinstance(unit.image['image'], str):  # TypeError for None / an array, as in Forge
            raise NotImplementedError("base64 images are not decoded by the fake")
        return unit


UiControlNetUnit = ControlNetUnit


def get_max_models_num():
    return shared.opts.data.get("control_net_unit_count", 3)
