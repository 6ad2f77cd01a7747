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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
    sha256: str | None = None  # of the released file; a download must match it
    size: int | None = None  # exact size of the released file, where published
    max_size: int = 600_000_000  # no download may grow past this (a wrong or hostile server)
    aliases: tuple[str, ...] = field(default=())


# SHA-256 and sizes as published for the released files (each found in several independent
# projects that pin them; the S3FD and FAN names carry the first 10 hex digits of their hash,
# torch.hub's convention). No size was found for lipsync_expert and fan: those are bounded.
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
            sha256="ca9ab7b7b812c0e80a6e70a5977c545a1e8a365a6c49d5e533023c034d7ac3d8",
            size=435_801_865,
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
            sha256="b78b681b68ad9fe6c6fb1debc6ff43ad05834a8af8a62ffc4167b7b34ef63c37",
            size=435_807_851,
        ),
        KnownCheckpoint(
            "lipsync_expert",
            "lipsync_expert.pth",
            "syncnet",
            "the expert lip-sync discriminator (training only)",
            ("https://huggingface.co/numz/wav2lip_studio/resolve/main/Wav2lip/lipsync_expert.pth",),
            60_000_000,
            sha256="9b9936c721696446eeed353032cab242a8cf0eed8c46cde540366f6ae5493be5",
            max_size=400_000_000,
        ),
        KnownCheckpoint(
            "fan",
            "2DFAN4-11f355bf06.pth.tar",
            "landmarks",
            "FAN 68-point landmarks (improved/enhanced modes with the s3fd detector)",
            ("https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",),
            90_000_000,
            sha256="11f355bf0693120222f5955ce3f9dc8fb5763ebb30a47d7906e509490d32e4aa",
            max_size=200_000_000,
        ),
        KnownCheckpoint(
            "gfpgan",
            "GFPGANv1.4.pth",
            "restoration",
            "GFPGAN v1.4 face restoration (enhanced mode)",
            ("https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",),
            300_000_000,
            sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
            size=348_632_874,
        ),
        KnownCheckpoint(
            "s3fd",
            "s3fd.pth",
            "s3fd",
            "S3FD face detector (the default detector; fetched on first use)",
            ("https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",),
            85_000_000,
            sha256="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
            size=89_843_225,
        ),
    )
}


MUSETALK = "musetalk"  # the name of MuseTalk 1.5's files, in <models>/musetalk/ in its own layout
_HF = "https://huggingface.co"
# MuseTalk 1.5 and its components, from their public Hugging Face repos, into <models>/musetalk/ in
# the layout MuseTalk's download script makes. SHA-256 and exact size where two independent public
# sources agree (or one is a Git LFS pointer of the same file):
# - sd-vae-ft-mse diffusion_pytorch_model.safetensors (revision 31f26fde): a1d99348..., 334,643,276
#   bytes: an LFS pointer (workmusicalflow/CatVTON, sd-vae-ft-mse/) and several projects' manifests
#   that pin stabilityai/sd-vae-ft-mse by revision;
# - whisper-tiny model.safetensors (revision 169d4a43): 7ebd0e69..., 151,061,672 bytes: several
#   independent projects' manifests pinning openai/whisper-tiny by revision.
# None was found for MuseTalk's unet.pth or the small JSON configs: those are bounded by size.
_VAE_SHA256 = "a1d993488569e928462932c8c38a0760b874d166399b14414135bd9c42df5815"
_WHISPER_SHA256 = "7ebd0e69e78190ffe1438491fa05cc1f5c1aa3a4c4db3bc1723adbb551ea2395"
_VAE_URL = f"{_HF}/stabilityai/sd-vae-ft-mse/resolve/31f26fdeee1355a5c34592e401dd41e45d25a493/diffusion_pytorch_model.safetensors"
_WHISPER_URL = f"{_HF}/openai/whisper-tiny/resolve/169d4a4341b33bc18d8881c4b69c2e104e1cc0af/model.safetensors"
MUSETALK_FILES: tuple[KnownCheckpoint, ...] = tuple(
    KnownCheckpoint(f"{MUSETALK}/{rel}", f"{MUSETALK}/{rel}", MUSETALK, what, (url,), lo, sha256=sha,
                    size=size, max_size=hi)
    for rel, what, url, lo, hi, sha, size in (
        ("musetalkV15/unet.pth", "MuseTalk 1.5 UNet (commercial use allowed)",
         f"{_HF}/TMElyralab/MuseTalk/resolve/main/musetalkV15/unet.pth", 3_000_000_000, 3_700_000_000, None, None),
        ("musetalkV15/musetalk.json", "MuseTalk 1.5 UNet config",
         f"{_HF}/TMElyralab/MuseTalk/resolve/main/musetalkV15/musetalk.json", 200, 20_000, None, None),
        ("sd-vae/config.json", "sd-vae-ft-mse VAE config",
         f"{_HF}/stabilityai/sd-vae-ft-mse/resolve/main/config.json", 200, 20_000, None, None),
        ("sd-vae/diffusion_pytorch_model.safetensors", "sd-vae-ft-mse VAE weights",
         _VAE_URL, 300_000_000, 400_000_000, _VAE_SHA256, 334_643_276),
        ("whisper/config.json", "whisper-tiny config",
         f"{_HF}/openai/whisper-tiny/resolve/main/config.json", 200, 100_000, None, None),
        ("whisper/model.safetensors", "whisper-tiny weights",
         _WHISPER_URL, 140_000_000, 170_000_000, _WHISPER_SHA256, 151_061_672),
        ("whisper/preprocessor_config.json", "whisper feature-extractor config",
         f"{_HF}/openai/whisper-tiny/resolve/main/preprocessor_config.json", 200, 2_000_000, None, None),
    )
)


def models_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("WAV2LIP_UHQ_MODELS")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wav2lip-uhq" / "models"


def local_path(name: str, directory: str | Path | None = None) -> Path:
    if name == MUSETALK:
        return models_dir(directory) / MUSETALK
    known = {c.name: c for c in MUSETALK_FILES}.get(name) or KNOWN_CHECKPOINTS[name]
    return models_dir(directory) / known.filename


def list_checkpoints(directory: str | Path | None = None) -> list[tuple[KnownCheckpoint, Path, bool]]:
    """(checkpoint, where it is looked for, present) for every known checkpoint, then MuseTalk's
    files (``musetalk/...``: where each goes in the models folder)."""
    return [
        (c, local_path(c.name, directory), local_path(c.name, directory).is_file())
        for c in (*KNOWN_CHECKPOINTS.values(), *MUSETALK_FILES)
    ]


def musetalk_folders(directory: str | Path | None = None) -> list[Path]:
    """MuseTalk models folders in the models folder: the folder itself (a MuseTalk ``models/``
    used as it is) and its subfolders (``musetalk/`` from ``models download musetalk``, or any
    copy of MuseTalk's ``models/``)."""
    from .musetalk_layout import musetalk_root

    folder = models_dir(directory)
    if not folder.is_dir():
        return []
    found = [folder] if musetalk_root(folder) == folder else []
    return found + sorted(p for p in folder.iterdir() if p.is_dir() and musetalk_root(p) == p)


def download_musetalk(
    directory: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch MuseTalk 1.5's files that are missing into ``<models>/musetalk`` (each verified
    and renamed into place like any checkpoint); the folder."""
    for ckpt in MUSETALK_FILES:
        if not local_path(ckpt.name, directory).is_file():
            fetch_verified(ckpt, local_path(ckpt.name, directory), progress, timeout)
    return local_path(MUSETALK, directory)


def download(
    name: str,
    directory: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch a known checkpoint into the models folder.

    The file is hashed while it streams into a temporary name beside its destination; it is
    renamed into place only when its size and SHA-256 are those of the released file. A server
    announcing or sending more than the checkpoint's size limit is cut off at once. Nothing is
    left behind on failure.
    """
    if name == MUSETALK:
        return download_musetalk(directory, progress, timeout)
    if name not in KNOWN_CHECKPOINTS:
        known = ", ".join([*KNOWN_CHECKPOINTS, MUSETALK])
        raise CheckpointError(f"unknown checkpoint {name!r}; known: {known}")
    return fetch_verified(KNOWN_CHECKPOINTS[name], local_path(name, directory), progress, timeout)


def fetch_verified(
    ckpt: KnownCheckpoint,
    dest: Path,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 30.0,
) -> Path:
    """``ckpt`` from its mirrors to ``dest``, verified as ``download`` does (also for files that are
    not in ``KNOWN_CHECKPOINTS``, e.g. the neural voices of ``wav2lip_uhq.speech``)."""
    name = ckpt.name
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in ckpt.urls:
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.download")
        try:
            size, digest = _fetch(url, tmp, progress, timeout, _size_limit(ckpt))
            _verify(ckpt, size, digest)
            os.replace(tmp, dest)
            log.info("downloaded %s to %s (%d bytes, %s)", name, dest, size,
                     "SHA-256 verified" if ckpt.sha256 else "size checked, no published SHA-256")
            return dest
        except (OSError, urllib.error.URLError, CheckpointError) as exc:
            errors.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise CheckpointError(
        f"could not download {ckpt.filename} ({'; '.join(errors)}). If this machine is offline, "
        f"download it elsewhere and put it at {dest}"
    )


def _size_limit(ckpt: KnownCheckpoint) -> int:
    return ckpt.size if ckpt.size is not None else ckpt.max_size


def _verify(ckpt: KnownCheckpoint, size: int, digest: str) -> None:
    if size < ckpt.min_size:
        raise CheckpointError(f"download is only {size} bytes (expected at least {ckpt.min_size})")
    if ckpt.size is not None and size != ckpt.size:
        raise CheckpointError(f"download is {size} bytes, the released file has {ckpt.size}")
    if ckpt.sha256 and digest != ckpt.sha256:
        raise CheckpointError(f"SHA-256 {digest[:16]}... is not the released file's ({ckpt.sha256[:16]}...)")


def _fetch(url: str, dest: Path, progress, timeout: float, limit: int) -> tuple[int, str]:
    """Stream ``url`` into ``dest``; (bytes, SHA-256). More than ``limit`` bytes is an error."""
    req = urllib.request.Request(url, headers={"User-Agent": "wav2lip-uhq"})
    h = hashlib.sha256()
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as fh:
        total = int(resp.headers.get("Content-Length") or 0)
        if total > limit:
            raise CheckpointError(f"the server announces {total} bytes, more than the {limit} expected")
        done = 0
        while chunk := resp.read(1 << 20):
            done += len(chunk)
            if done > limit:
                raise CheckpointError(f"the server sent more than the {limit} bytes expected")
            fh.write(chunk)
            h.update(chunk)
            if progress:
                progress(done, total)
        if total and done != total:
            raise CheckpointError(f"connection closed after {done} of {total} bytes")
    return done, h.hexdigest()


def resolve_checkpoint(
    checkpoint: str | Path | None,
    directory: str | Path | None = None,
    allow_download: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """A path for ``checkpoint``: a file path, a known name, or None for the default
    (downloaded on first use when allowed)."""
    if checkpoint is not None and str(checkpoint) not in (*KNOWN_CHECKPOINTS, MUSETALK):
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            from .musetalk_layout import find_files

            find_files(path)  # a MuseTalk folder, or a message naming what is missing
            return path
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint file not found")
        return path
    name = str(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    if name == MUSETALK:
        return _resolve_musetalk(directory, allow_download, progress)
    path = local_path(name, directory)
    if path.is_file():
        return path
    if not allow_download:
        raise CheckpointError(
            f"{path}: {name} is not in the models folder; run `wav2lip-uhq models download {name}`"
        )
    log.info("%s not found in %s; downloading it", name, path.parent)
    return download(name, directory, progress)


def _resolve_musetalk(directory, allow_download: bool, progress) -> Path:
    """``musetalk``: the first MuseTalk folder in the models folder (``musetalk/`` first), else
    downloaded into ``<models>/musetalk`` when allowed."""
    from .musetalk_layout import find_files

    folders = musetalk_folders(directory)
    own = local_path(MUSETALK, directory)
    folders.sort(key=lambda p: p != own)
    for folder in folders:
        try:
            find_files(folder)
            return folder
        except CheckpointError:
            if not allow_download:
                raise
    if not allow_download:
        raise CheckpointError(
            f"{own}: MuseTalk is not in the models folder; run `wav2lip-uhq models download musetalk`"
        )
    log.info("MuseTalk not found in %s; downloading it", own.parent)
    return download_musetalk(directory, progress)
