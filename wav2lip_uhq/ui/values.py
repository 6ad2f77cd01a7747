"""The UI's values: defaults from the option schema, and the one mapping to a ``RunConfig``.

Pure Python (no gradio, no torch): the API and the tests use it too. Every key is a flat
option key of ``wav2lip_uhq.options`` (``pad_top`` for a part of ``pads``), plus the inputs
(``face``, ``audio``) and ``preview_frame``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..files import file_path
from ..options import Option

FACE_TYPES = [".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".gif", ".jpg", ".jpeg", ".png", ".webp", ".bmp"]
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
INPUT_KEYS = ("face", "audio")
EXTRA_SPEAKERS = 4  # rows of the "Speakers & ranges" accordion: speakers 2..5
SPEAKER_ROWS = tuple((f"speaker{n}_audio", f"speaker{n}_face", f"speaker{n}_ranges")
                     for n in range(2, 2 + EXTRA_SPEAKERS))
FACE_PICK = "face_pick"  # which speaker a click on the preview picks the face of
UI_ONLY_KEYS = ("preview_frame", FACE_PICK, *(k for row in SPEAKER_ROWS for k in row))
PREVIEW_FRAME = Option("the output frame the preview shows", "run", key="preview_frame", kind="int",
                       label="preview frame", minimum=0)


class UIInputError(ValueError):
    """Bad or missing input, with a message for the user (shown as ``gr.Error``)."""


def ui_defaults() -> dict[str, Any]:
    """Every UI key with its default, straight from the option declarations."""
    from ..config import RunConfig
    from ..options import registry, values_from_config

    shown = {k for opt in registry().values() if opt.ui for k in opt.value_keys()}
    flat = values_from_config(RunConfig(face=Path("face"), audio=Path("audio")))
    rows = {k: v for n, (audio, face, ranges) in enumerate(SPEAKER_ROWS, 2)
            for k, v in ((audio, None), (face, n - 1), (ranges, ""))}
    return {"face": None, "audio": None, **{k: v for k, v in flat.items() if k in shown}, "preview_frame": 0,
            FACE_PICK: "1", **rows}


DEFAULTS: dict[str, Any] = ui_defaults()
UI_KEYS = tuple(DEFAULTS)


def parse_box(text: Any) -> tuple[int, int, int, int] | None:
    """``"TOP BOTTOM LEFT RIGHT"`` (spaces or commas) -> a box, ``""`` -> None (detect)."""
    from ..options import OptionError, coerce, get

    try:
        return coerce(get("box"), text)
    except OptionError as exc:
        raise UIInputError(str(exc)) from None


def resolve_checkpoint_choice(choice: Any, models_dir: Path | None) -> str | Path | None:
    """A known name stays a name (downloaded on first use); a file name is looked up in the models folder."""
    from ..checkpoints import KNOWN_CHECKPOINTS, MUSETALK
    from ..checkpoints import models_dir as default_models_dir

    if choice is None or choice == "":
        return None
    choice = str(choice)
    if choice in KNOWN_CHECKPOINTS or choice == MUSETALK:
        return choice
    path = Path(choice).expanduser()
    if not path.is_absolute() and not path.exists():
        path = default_models_dir(models_dir) / choice
    return path


def checkpoint_choices(models_dir: Path | None = None) -> list[str]:
    """Generator checkpoints for the dropdown: the released names (MuseTalk's too), then MuseTalk
    folders and other files in the models folder."""
    from ..checkpoints import KNOWN_CHECKPOINTS, MUSETALK, list_checkpoints, musetalk_folders
    from ..checkpoints import models_dir as default_models_dir

    names = [c.name for c, _, _ in list_checkpoints(models_dir) if c.kind == "wav2lip"] + [MUSETALK]
    names += [p.name for p in musetalk_folders(models_dir)
              if p != default_models_dir(models_dir) and p.name != MUSETALK]
    known_files = {c.filename for c in KNOWN_CHECKPOINTS.values()}
    folder = default_models_dir(models_dir)
    extra = []
    if folder.is_dir():
        extra = sorted(
            p.name
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES and p.name not in known_files
        )
    return names + extra


def visibility_for_mode(mode: str) -> dict[str, bool]:
    """Which option groups matter in ``mode``."""
    return {
        "mask": mode in ("improved", "enhanced", "uhq"),
        "restore": mode == "enhanced",
        "refine": mode == "uhq",
    }


def _inputs(values: Mapping[str, Any]) -> tuple[Path, Path]:
    face, audio = file_path(values.get("face")), file_path(values.get("audio"))
    if face is None and audio is None:
        raise UIInputError("Add a face video or image and an audio file.")
    if face is None:
        raise UIInputError("Add a face video or image.")
    if audio is None:
        raise UIInputError("Add an audio file (speech).")
    for what, path in (("face", face), ("audio", audio)):
        if not path.is_file():
            from ..ui_runner import shown_path

            raise UIInputError(f"{what} file not found: {shown_path(path)}")
    return face, audio


def speaker_values(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The extra speakers of the UI's rows (those with an audio), as the ``speakers`` option takes them."""
    out = []
    for n, (audio_key, face_key, ranges_key) in enumerate(SPEAKER_ROWS, 2):
        audio = file_path(values.get(audio_key))
        if audio is None:
            continue
        if not audio.is_file():
            from ..ui_runner import shown_path

            raise UIInputError(f"speaker {n}'s audio file not found: {shown_path(audio)}")
        face = values.get(face_key)
        out.append({"audio": str(audio), "face_index": -1 if face in (None, "") else face,
                    "ranges": str(values.get(ranges_key) or "")})
    return out


def face_at(boxes: list[tuple[int, int, int, int]], x: float, y: float) -> int | None:
    """The face index (left to right, as ``--face-index`` counts) of the box under a click: the
    smallest box holding the point, else the nearest within one box size; None: no face there."""
    inside = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    holding = [k for k, b in enumerate(boxes) if b[0] <= x < b[2] and b[1] <= y < b[3]]
    if holding:
        return min(holding, key=lambda k: inside[k])
    best = None
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        d = ((x - (x1 + x2) / 2) ** 2 + (y - (y1 + y2) / 2) ** 2) ** 0.5
        if d <= max(x2 - x1, y2 - y1) and (best is None or d < best[0]):
            best = (d, k)
    return None if best is None else best[1]


def option_values_from_ui(values: Mapping[str, Any]) -> dict[str, Any]:
    """The option values among the UI's (or the API's) values, as ``config_from_values`` takes them
    (a checkpoint choice resolved, an emptied prompt box meaning the default): also the base of
    every row of a batch started from the UI."""
    from ..options import part_owner

    known = {k: v for k, v in values.items() if part_owner(k) is not None}
    rows = speaker_values(values)
    if rows:  # the UI's rows (the API sends "speakers" itself)
        known["speakers"] = [*(known.get("speakers") or ()), *rows]
    if "checkpoint" in known:
        known["checkpoint"] = resolve_checkpoint_choice(known["checkpoint"], file_path(values.get("models_dir")))
    if "prompt" in known and not str(known["prompt"] or "").strip():
        known.pop("prompt")  # an emptied prompt box means the default prompt
    if known.get("negative_prompt") is None:
        known.pop("negative_prompt", None)
    return known


def config_from_ui(values: Mapping[str, Any], *, need_sd_checkpoint: bool = True):
    """Map the UI's (or the API's) values to a ``RunConfig``; ``UIInputError`` says what is wrong.

    Keys missing from ``values`` take the declared defaults. ``need_sd_checkpoint=False`` when the
    host (the WebUI) supplies the Stable Diffusion model for ``uhq``.
    """
    from ..options import config_from_values

    face, audio = _inputs(values)
    known = option_values_from_ui(values)
    try:
        config = config_from_values(known, face, audio)
    except ValueError as exc:
        raise UIInputError(str(exc)) from None
    if config.mode == "uhq" and config.refine.checkpoint is None and need_sd_checkpoint:
        raise UIInputError("uhq mode needs a Stable Diffusion 1.5 checkpoint (file or diffusers folder).")
    return config


__all__ = [
    "DEFAULTS",
    "FACE_TYPES",
    "UIInputError",
    "UI_KEYS",
    "checkpoint_choices",
    "config_from_ui",
    "face_at",
    "file_path",
    "option_values_from_ui",
    "parse_box",
    "resolve_checkpoint_choice",
    "ui_defaults",
    "visibility_for_mode",
]
