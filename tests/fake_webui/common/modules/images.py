"""``modules/images.py``: ``save_image`` (records the call, writes the file) and ``resize_image``."""

from __future__ import annotations

import os

from PIL import Image

from modules import _fake


def resize_image(resize_mode, im, width, height, upscaler_name=None):
    """0: just resize; 1: crop and resize; 2: resize and fill (the fake: plain resize for all)."""
    if im.size == (width, height):
        return im
    return im.resize((width, height), Image.LANCZOS)


def save_image(image, path, basename, seed=None, prompt=None, extension='png', info=None, short_filename=False,
               no_prompt=False, grid=False, pnginfo_section_name='parameters', p=None, existing_info=None,
               forced_filename=None, suffix="", save_to_dirs=None):
    os.makedirs(path, exist_ok=True)
    name = forced_filename or f"{len(_fake.saved_images):05d}-{seed}{suffix}"
    fullfn = os.path.join(path, f"{name}.{extension}")
    image.save(fullfn)
    _fake.saved_images.append({"path": fullfn, "basename": basename, "seed": seed, "p": p, "grid": grid})
    return fullfn, None
