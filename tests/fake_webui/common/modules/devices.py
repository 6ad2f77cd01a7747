"""``modules/devices.py``: the compute device (CPU in the fake) and ``torch_gc``."""

from __future__ import annotations

import contextlib

import torch

from modules import _fake

cpu = torch.device("cpu")
device = device_interrogate = device_gfpgan = device_esrgan = device_codeformer = cpu
dtype = torch.float16
dtype_vae = torch.float16
dtype_unet = torch.float16
unet_needs_upcast = False


def get_optimal_device_name():
    return "cpu"


def get_optimal_device():
    return cpu


def torch_gc():
    _fake.gc_calls.append(1)


def autocast(disable=False):
    return contextlib.nullcontext()


def without_autocast(disable=False):
    return contextlib.nullcontext()
