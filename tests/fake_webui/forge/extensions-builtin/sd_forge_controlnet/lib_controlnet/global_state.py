"""Forge's ``lib_controlnet/global_state.py``, fake: the model and preprocessor lists."""

from __future__ import annotations

from types import SimpleNamespace

from modules import _fake

controlnet_filenames = {'None': 'model.safetensors'}
controlnet_names = ['None']


def update_controlnet_filenames():
    """Rescan the model folders (names are "<stem> [<hash>]", "None" first)."""
    global controlnet_filenames, controlnet_names
    controlnet_filenames = {'None': 'model.safetensors'}
    for name in _fake.cn_models:
        if name != "None":
            controlnet_filenames[name] = f"/models/ControlNet/{name.split(' [')[0]}.safetensors"
    controlnet_names = list(controlnet_filenames.keys())


update_cn_models = update_controlnet_filenames


def get_all_controlnet_names():
    return list(controlnet_names)


def get_controlnet_filename(controlnet_name):
    return controlnet_filenames[controlnet_name]  # KeyError unless the exact listed name


def _pre(name, needs_model=True):
    return SimpleNamespace(name=name, do_not_need_model=not needs_model, tags=[],
                           corp_image_with_a1111_mask_when_in_img2img_inpaint_tab=True)


supported_preprocessors = {p.name: p for p in [
    _pre("None"), _pre("canny"), _pre("depth_midas"), _pre("lineart_realistic"), _pre("tile_resample"),
    _pre("inpaint_only"), _pre("InsightFace (InstantID)"), _pre("reference_only", needs_model=False),
]}


def get_all_preprocessor_names():
    return list(supported_preprocessors.keys())


def get_preprocessor(name):
    return supported_preprocessors.get(name, None)


def get_filtered_preprocessor_names(tag):
    return [k for k, v in supported_preprocessors.items() if tag in v.tags]
