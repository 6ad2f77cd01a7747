"""MuseTalk's models folder as its download script lays it out (no torch needed to read it).

``<root>/musetalkV15/{unet.pth, musetalk.json}`` (1.0: ``<root>/musetalk/{pytorch_model.bin,
musetalk.json}``), ``<root>/sd-vae/{config.json, diffusion_pytorch_model.safetensors|.bin}``,
``<root>/whisper/{config.json, model.safetensors|pytorch_model.bin, preprocessor_config.json}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError

UNET_FOLDERS = (("musetalkV15", "unet.pth", "1.5"), ("musetalk", "pytorch_model.bin", "1.0"))
VAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
WHISPER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class MuseTalkFiles:
    """Where each of MuseTalk's files is; ``version`` is "1.5" or "1.0"."""

    root: Path
    unet: Path
    unet_config: Path
    vae_config: Path
    vae_weights: Path
    whisper_config: Path
    whisper_weights: Path
    whisper_preprocessor: Path
    version: str

    def stamp(self) -> tuple:
        """(path, size, mtime) of every weight file: a model-bank and cache identity."""
        return tuple((str(p), p.stat().st_size, p.stat().st_mtime) for p in (self.unet, self.vae_weights,
                                                                            self.whisper_weights))


def musetalk_root(path: str | Path) -> Path | None:
    """The MuseTalk models folder that ``path`` names (the folder, its UNet folder or the UNet
    file), or None when ``path`` is none of these."""
    p = Path(path).expanduser()
    if p.is_file():
        for folder, name, _ in UNET_FOLDERS:
            if p.name == name and p.parent.name == folder:
                return p.parent.parent
        return None
    if not p.is_dir():
        return None
    if any((p / folder).is_dir() for folder, _, _ in UNET_FOLDERS) and (p / "sd-vae").is_dir():
        return p
    for folder, name, _ in UNET_FOLDERS:
        if p.name == folder and (p / name).is_file():
            return p.parent
    return None


def find_files(path: str | Path) -> MuseTalkFiles:
    """MuseTalk's files from its models folder, its UNet folder or the UNet file (siblings are
    found from there); a missing file is named with where it belongs."""
    p = Path(path).expanduser()
    root = musetalk_root(p)
    if root is None:
        raise CheckpointError(
            f"{p}: not a MuseTalk models folder (expected musetalkV15/unet.pth, sd-vae/ and whisper/ in it)"
        )
    if p.is_file():
        unet, version = p, "1.5" if p.parent.name == "musetalkV15" else "1.0"
    else:
        unet, version = _pick_unet(root, p)
    vae, whisper = root / "sd-vae", root / "whisper"
    return MuseTalkFiles(
        root=root, unet=unet, unet_config=_need(unet.parent / "musetalk.json"),
        vae_config=_need(vae / "config.json"), vae_weights=_first(vae, VAE_WEIGHTS),
        whisper_config=_need(whisper / "config.json"), whisper_weights=_first(whisper, WHISPER_WEIGHTS),
        whisper_preprocessor=_need(whisper / "preprocessor_config.json"), version=version,
    )


def _pick_unet(root: Path, given: Path) -> tuple[Path, str]:
    """1.5 unless the 1.0 folder itself was named (or is the only one there)."""
    order = UNET_FOLDERS[::-1] if given.name == "musetalk" else UNET_FOLDERS
    for folder, name, version in order:
        if (root / folder / name).is_file():
            return root / folder / name, version
    folder, name, _ = order[0]
    raise CheckpointError(f"{root / folder / name}: MuseTalk's UNet weights are missing")


def _need(path: Path) -> Path:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from the MuseTalk models folder")
    return path


def _first(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder / names[0]}: missing from the MuseTalk models folder (or {names[1]})")
