"""Which device and precision a run uses (shared by the pipeline and the generators)."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import InputError

DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device_name(device: str) -> str:
    """The device's spelling, checked without importing torch."""
    if not isinstance(device, str) or not DEVICE_NAME.fullmatch(device):
        raise InputError(f"--device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_device(device: str = "auto") -> str:
    """``auto``: CUDA, then Apple's MPS, then the CPU. A device that is not there is one line
    (``InputError``) naming it, not torch's driver error from deep inside the first model load."""
    check_device_name(device)
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA GPU is available to this torch "
                             f"({torch.__version__}); use --device cpu or auto")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices")
        return device
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bfloat16 dot products (AVX512-BF16, AMX): bf16 convolutions run ~3x
    faster there than fp32; elsewhere bf16 is emulated and slower."""
    import torch

    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        if probe is not None and not probe():
            return False
    except RuntimeError:
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str, mode: str) -> str:
    """``auto``: fp16 on CUDA; on CPU bf16 where it is native, except in ``fast`` mode, which
    must reproduce upstream's fp32 frames."""
    if precision != "auto":
        if precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"unknown precision {precision!r} (auto, fp32, fp16, bf16)")
        return precision
    if device.startswith("cuda"):
        return "fp16"
    if device == "cpu" and mode != "fast" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"
