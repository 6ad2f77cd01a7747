"""Known checkpoints, the models folder, and downloads from public mirrors.

The models folder is, in order: an explicit argument (``--models-dir``), the environment
variable ``WAV2LIP_UHQ_MODELS``, then ``~/.cache/wav2lip-uhq/models``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import CheckpointError

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "wav2lip_gan"


@dataclass(frozen=True)
class KnownCheckpoint:
    name: str
    filename: str
    kind: str  # "wav2lip", "syncnet", "disc_qual" or "s3fd"
    description: str
    urls: tuple[str, ...]
    min_size: int  # bytes; smaller downloads are rejected as truncated
    sha256: str | None = None
    aliases: tuple[str, ...] = field(default=())


KNOWN_CHECKPOINTS: dict[str, KnownCheckpoint] = {
    c.name: c
    for c in (
        KnownCheckpoint(
            "wav2lip_gan",
            "wav2lip_gan.pth",
            "wav2lip",
            "Wav2Lip 96 px with the visual-quality GAN: sharper mouth (default)",
            (
                "https://huggingface.co/numz/wav2lip_studio/resolve/main/Wav2lip/wav2lip_gan.pth",
                "https://github.com/justinjohn0306/Wav2Lip/releases/download/models/wav2lip_gan.pth",
            ),
            140_000_000,
        ),
        KnownCheckpoint(
            "wav2lip",
            "wav2lip.pth",
            "wav2lip",
            "Wav2Lip 96 px without GAN: most accurate sync, blurrier",
            (
                "https://huggingface.co/numz/wav2lip_studio/resolve/main/Wav2lip/wav2lip.pth",
                "https://github.com/justinjohn0306/Wav2Lip/releases/download/models/wav2lip.pth",
            ),
            140_000_000,
        ),
        KnownCheckpoint(
            "lipsync_expert",
            "lipsync_expert.pth",
            "syncnet",
            "the expert lip-sync discriminator (training only)",
            ("https://huggingface.co/numz/wav2lip_studio/resolve/main/Wav2lip/lipsync_expert.pth",),
            60_000_000,
        ),
        KnownCheckpoint(
            "fan",
            "2DFAN4-11f355bf06.pth.tar",
            "landmarks",
            "FAN 68-point landmarks (improved/enhanced modes with the s3fd detector)",
            ("https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",),
            90_000_000,
        ),
        KnownCheckpoint(
            "gfpgan",
            "GFPGANv1.4.pth",
            "restoration",
            "GFPGAN v1.4 face restoration (enhanced mode)",
            ("https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",),
            300_000_000,
        ),
        KnownCheckpoint(
            "s3fd",
            "s3fd.pth",
            "s3fd",
            "S3FD face detector (the default detector; fetched on first use)",
            ("https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",),
            85_000_000,
        ),
    )
}


def models_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("WAV2LIP_UHQ_MODELS")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wav2lip-uhq" / "models"


def local_path(name: str, directory: str | Path | None = None) -> Path:
    return models_dir(directory) / KNOWN_CHECKPOINTS[name].filename


def list_checkpoints(directory: str | Path | None = None) -> list[tuple[KnownCheckpoint, Path, bool]]:
    """(checkpoint, where it is looked for, present) for every known checkpoint."""
    return [
        (c, local_path(c.name, directory), local_path(c.name, directory).is_file())
        for c in KNOWN_CHECKPOINTS.values()
    ]


def download(
    name: str,
    directory: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch a known checkpoint into the models folder (atomic, size- and hash-checked)."""
    if name not in KNOWN_CHECKPOINTS:
        raise CheckpointError(f"unknown checkpoint {name!r}; known: {', '.join(KNOWN_CHECKPOINTS)}")
    ckpt = KNOWN_CHECKPOINTS[name]
    dest = local_path(name, directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in ckpt.urls:
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.download")
        try:
            _fetch(url, tmp, progress, timeout)
            size = tmp.stat().st_size
            if size < ckpt.min_size:
                raise CheckpointError(f"download is only {size} bytes (expected at least {ckpt.min_size})")
            if ckpt.sha256 and _sha256(tmp) != ckpt.sha256:
                raise CheckpointError("SHA-256 does not match the released file")
            os.replace(tmp, dest)
            log.info("downloaded %s to %s", name, dest)
            return dest
        except (OSError, urllib.error.URLError, CheckpointError) as exc:
            errors.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise CheckpointError(
        f"could not download {ckpt.filename} ({'; '.join(errors)}). If this machine is offline, "
        f"download it elsewhere and put it at {dest}"
    )


def _fetch(url: str, dest: Path, progress, timeout: float) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "wav2lip-uhq"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as fh:
        total = int(resp.headers.get("Content-Length") or 0)
        done = 0
        while chunk := resp.read(1 << 20):
            fh.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
        if total and done != total:
            raise CheckpointError(f"connection closed after {done} of {total} bytes")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def resolve_checkpoint(
    checkpoint: str | Path | None,
    directory: str | Path | None = None,
    allow_download: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """A path for ``checkpoint``: a file path, a known name, or None for the default
    (downloaded on first use when allowed)."""
    if checkpoint is not None and str(checkpoint) not in KNOWN_CHECKPOINTS:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint file not found")
        return path
    name = str(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    path = local_path(name, directory)
    if path.is_file():
        return path
    if not allow_download:
        raise CheckpointError(
            f"{path}: {name} is not in the models folder; run `wav2lip-uhq models download {name}`"
        )
    log.info("%s not found in %s; downloading it", name, path.parent)
    return download(name, directory, progress)
