"""Which released model files a run's settings need, known before any of them loads.

So that a missing model is reported once with everything else the run will need and the offline
alternative, instead of one missing file per attempt.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError

LANDMARK_MODES = ("improved", "enhanced", "uhq")  # the modes that composite through landmark masks
OFFLINE_HINT = "or run offline with --detector dlib (dlib detection and landmarks need no download)"


def uses_musetalk(config, box_too: bool = False) -> bool:
    """The run's generator is MuseTalk's, whose box comes from landmarks in every mode (so
    False with ``--box``, which fixes the box, unless ``box_too``)."""
    if (config.faces.box is not None and not box_too) or config.checkpoint is None:
        return False
    from .musetalk_layout import musetalk_root

    name = str(config.checkpoint)
    return name == "musetalk" or musetalk_root(name) is not None


def landmark_backend(config) -> str | None:
    """The 68-point landmark model a run uses: ``fan``, ``dlib`` or None (not needed). The one
    rule for the model bank and for the list of models a run needs."""
    if config.mode not in LANDMARK_MODES and not config.composite.aligned and not uses_musetalk(config):
        return None
    name = config.composite.landmarks
    if name == "auto":  # dlib needs no download; FAN goes with S3FD detection
        name = "dlib" if config.faces.detector == "dlib" or config.faces.box is not None else "fan"
    return name


def needed_checkpoints(config) -> list[str]:
    """Known checkpoint names the run loads from the models folder (files the user named excluded)."""
    from .checkpoints import KNOWN_CHECKPOINTS

    names = []
    ckpt = config.checkpoint
    if ckpt is None or str(ckpt) in KNOWN_CHECKPOINTS:
        names.append(str(ckpt) if ckpt is not None else "wav2lip_gan")
    if config.faces.box is None and config.faces.detector == "s3fd" and config.faces.s3fd_path is None:
        names.append("s3fd")
    if landmark_backend(config) == "fan" and config.composite.fan_path is None:
        names.append("fan")
    if config.mode == "enhanced" and config.composite.restorer is None:
        names.append("gfpgan")
    return names


def missing_checkpoints(config) -> list[tuple[str, Path]]:
    from .checkpoints import local_path

    out = []
    for name in needed_checkpoints(config):
        path = local_path(name, config.models_dir)
        if not path.is_file():
            out.append((name, path))
    return out


def missing_message(missing: list[tuple[str, Path]], reason: str) -> str:
    """One line: every missing file, where it goes, how to get it, and the offline way."""
    folder = missing[0][1].parent
    files = ", ".join(p.name for _, p in missing)
    names = " ".join(n for n, _ in missing)
    hint = f"; {OFFLINE_HINT}" if {"s3fd", "fan"} & {n for n, _ in missing} else ""
    return (f"{reason}: this run needs {files} in {folder}; get them with `wav2lip-uhq models download "
            f"{names}` (or put the files there){hint}")


def check_models_present(config) -> None:
    """Without downloads, every needed file must be there: one ``CheckpointError`` naming them all."""
    missing = missing_checkpoints(config)
    if missing and not config.allow_download:
        raise CheckpointError(missing_message(missing, "missing models (downloads are off)"))
