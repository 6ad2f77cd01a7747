"""One way to load (and save) every Wav2Lip-family checkpoint.

Accepted: upstream training dicts (``state_dict`` with or without ``module.``), bare
state dicts, ``.safetensors`` and, only when the caller trusts them, TorchScript archives
(``trust_torchscript=True``: an archive holds code that ``torch.jit.load`` compiles and runs,
not just weights). The architecture is detected from the keys and shapes. Nothing is
unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from ..errors import CheckpointError
from .syncnet import SyncNet
from .wav2lip import Wav2Lip, Wav2LipDiscQual

log = logging.getLogger(__name__)

KINDS = ("wav2lip", "disc_qual", "syncnet")


@dataclass(frozen=True)
class Architecture:
    kind: str  # one of KINDS
    img_size: int
    build: Callable[[], nn.Module]

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.img_size}"


ARCHITECTURES = (
    [Architecture("wav2lip", s, functools.partial(Wav2Lip, s)) for s in (96, 192, 256, 288)]
    + [Architecture("disc_qual", s, functools.partial(Wav2LipDiscQual, s)) for s in (96, 192, 256, 288)]
    + [Architecture("syncnet", s, functools.partial(SyncNet, s)) for s in (96, 288)]
)

# Other models users pass by mistake, recognised by a key prefix, for a helpful message.
_FOREIGN = {
    "netcnnaud.": "the syncnet_python LSE metric network (syncnet_v2.model), used by `python -m train eval`",
    "conv1_1.": "the S3FD face detector (s3fd.pth)",
    "conv_body_first.": "a GFPGAN face-restoration model",
    "model.diffusion_model.": "a Stable Diffusion checkpoint",
}


@functools.lru_cache(maxsize=None)
def _signature(arch: Architecture) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = arch.build()
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def read_state_dict(path: str | Path, trust_torchscript: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict on the CPU, ``module.`` stripped.

    A TorchScript archive is refused unless ``trust_torchscript``: loading one runs its code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the checkpoint file is empty (an interrupted download?)")

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a valid .safetensors file ({exc})") from exc
    elif _is_torchscript(path):
        if not trust_torchscript:
            raise CheckpointError(
                f"{path}: a TorchScript archive holds code, not just weights, and is not loaded by "
                "default; load it only if you trust its source (--trust-torchscript), or use a "
                ".pth/.safetensors release of the same model"
            )
        log.warning("%s: loading a TorchScript archive (trusted by the caller: it runs code)", path)
        try:
            obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as exc:
            raise CheckpointError(f"{path}: a TorchScript archive that cannot be loaded ({exc})") from exc
    else:
        obj = _torch_load(path)

    state = _unwrap(obj, path)
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def torch_load(path: str | Path, mmap: bool = False) -> object:
    """``torch.load(weights_only=True)`` of ``path`` on the CPU, with torch's own loader.

    AUTOMATIC1111 and Forge replace ``torch.load`` with their ``modules.safe.load``, whose zip
    check predates the ``.format_version`` entry newer torch writes: it refuses any file saved by
    torch >= 2.5 (our own training's checkpoints too) and returns None. The weights-only unpickler
    is at least as strict, so the original loader (``modules.safe.unsafe_torch_load``) is used."""
    load = torch.load
    host = sys.modules.get("modules.safe")
    if host is not None and load is getattr(host, "load", None) and callable(getattr(host, "unsafe_torch_load", None)):
        load = host.unsafe_torch_load
    return load(str(path), map_location="cpu", weights_only=True, mmap=mmap)


def _torch_load(path: Path) -> object:
    try:
        return torch_load(path)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        with open(path, "rb") as fh:
            head = fh.read(16)
        if "Unsupported global" in msg or "Unsupported class" in msg or head[:1] == b"\x80":
            raise CheckpointError(
                f"{path}: the file contains Python objects other than tensors; refusing to unpickle it "
                "(only state dicts, upstream training dicts, TorchScript and .safetensors are loaded)"
            ) from exc
        hint = " (it looks like a web page: a failed download?)" if b"<" in head else ""
        raise CheckpointError(f"{path}: not a PyTorch checkpoint or corrupt{hint}") from exc
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {exc}); "
            f"its size is {path.stat().st_size} bytes, download it again"
        ) from exc


def _unwrap(obj: object, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict", "params_ema", "params"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(
        f"{path}: contains no model weights (found {type(obj).__name__}"
        + (f" with keys {sorted(map(str, obj))[:6]}" if isinstance(obj, Mapping) else "")
        + ")"
    )


def detect_architecture(state: Mapping[str, torch.Tensor], path: str | Path = "<state_dict>") -> Architecture:
    """The architecture whose keys and shapes exactly match ``state``."""
    have = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    for arch in ARCHITECTURES:
        if _signature(arch) == have:
            return arch
    from .musetalk import is_musetalk_unet

    if is_musetalk_unet(have):
        raise CheckpointError(
            f"{path}: this is MuseTalk's UNet; give it as the generator checkpoint (its models folder or "
            "musetalkV15/unet.pth, with sd-vae/ and whisper/ beside it)"
        )
    for prefix, what in _FOREIGN.items():
        if any(k.startswith(prefix) for k in have):
            raise CheckpointError(f"{path}: this is {what}, not a Wav2Lip/SyncNet model")
    # Closest known architecture, for a precise message.
    best = max(ARCHITECTURES, key=lambda a: len(set(_signature(a)) & set(have)))
    common = set(_signature(best)) & set(have)
    if common:
        wrong = [k for k in common if _signature(best)[k] != have[k]]
        missing = len(set(_signature(best)) - set(have))
        raise CheckpointError(
            f"{path}: looks like a {best.kind} model but matches no known resolution "
            f"({len(have)} tensors, {missing} missing, {len(set(have) - set(_signature(best)))} unexpected, "
            f"{len(wrong)} with other shapes{', e.g. ' + wrong[0] if wrong else ''})"
        )
    raise CheckpointError(f"{path}: not a Wav2Lip-family checkpoint (keys like {sorted(have)[:3]})")


def read_shapes(path: str | Path, trust_torchscript: bool = False) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of a checkpoint without reading its tensors where the format allows
    (safetensors headers, memory-mapped zip checkpoints): kind detection of large files."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118 - not a dict
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a valid .safetensors file ({exc})") from exc
    if path.is_file() and zipfile.is_zipfile(path) and not _is_torchscript(path):
        try:
            obj = torch_load(path, mmap=True)
        except Exception:  # noqa: BLE001 - the full read below gives the precise message
            obj = None
        if obj is not None:
            state = _unwrap(obj, path)
            return {k.removeprefix("module."): tuple(v.shape) for k, v in state.items()}
    return {k: tuple(v.shape) for k, v in read_state_dict(path, trust_torchscript).items()}


def generator_kind(path: str | Path) -> str:
    """"musetalk" for a MuseTalk models folder, its UNet folder or a file whose keys are
    MuseTalk's UNet; otherwise "wav2lip" (whose loader reports any problem with the file)."""
    from .musetalk import find_files, is_musetalk_unet, musetalk_root

    path = Path(path)
    if path.is_dir():
        find_files(path)  # a clear message naming a missing file
        return "musetalk"
    try:
        shapes = read_shapes(path)
    except CheckpointError:  # unreadable, TorchScript, ...: the Wav2Lip loader says why
        return "wav2lip"
    if not is_musetalk_unet(shapes):
        return "wav2lip"
    if musetalk_root(path) is None:
        raise CheckpointError(
            f"{path}: MuseTalk's UNet must sit in its models folder as musetalkV15/unet.pth "
            "(or musetalk/pytorch_model.bin) with sd-vae/ and whisper/ beside it"
        )
    return "musetalk"


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    kind: str | None = None,
    dtype: torch.dtype | None = None,
    trust_torchscript: bool = False,
) -> nn.Module:
    """Load a checkpoint as its model, in eval mode, on ``device``.

    ``kind`` ("wav2lip", "disc_qual", "syncnet") rejects a checkpoint of another kind with a
    clear message (e.g. the lip-sync expert passed as the generator). ``trust_torchscript``
    allows TorchScript archives (see ``read_state_dict``).
    """
    state = read_state_dict(path, trust_torchscript=trust_torchscript)
    arch = detect_architecture(state, path)
    if kind is not None and arch.kind != kind:
        raise CheckpointError(
            f"{path}: this is a {arch.kind} checkpoint ({arch.img_size} px), a {kind} model is needed"
        )
    with torch.device("meta"):  # no random init of weights that are replaced right away
        model = arch.build()
    full = model.state_dict()
    for k in full:  # BatchNorm counters absent from old checkpoints: start at 0
        if k not in state and k.endswith("num_batches_tracked"):
            state[k] = torch.zeros((), dtype=torch.long)
    model.load_state_dict(state, strict=True, assign=True)
    model.architecture = arch  # type: ignore[attr-defined]
    model.eval().to(device)
    if dtype is not None:
        model.to(dtype)
    log.info("loaded %s (%s) from %s", arch.name, sum(p.numel() for p in model.parameters()), path)
    return model


def save_checkpoint(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    path: str | Path,
    optimizer_state: Mapping | None = None,
    global_step: int = 0,
    global_epoch: int = 0,
    extra: Mapping | None = None,
) -> Path:
    """Write atomically: ``.safetensors`` by extension, else upstream's training-dict layout.

    The upstream layout ``{"state_dict", "optimizer", "global_step", "global_epoch"}`` stays
    readable by the original Wav2Lip scripts.
    """
    path = Path(path)
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else dict(model_or_state)
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp))
        else:
            payload = {
                "state_dict": state,
                "optimizer": optimizer_state,
                "global_step": int(global_step),
                "global_epoch": int(global_epoch),
            }
            if extra:
                payload.update(extra)
            torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
