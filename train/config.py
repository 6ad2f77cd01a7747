"""Dataclass configs <-> config files (JSON/TOML) <-> command-line overrides.

Every field of a config dataclass becomes ``--field-name``; precedence is
defaults < ``--config FILE`` < explicit command-line flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        hint = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        origin = typing.get_origin(hint)
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args else hint
        help_text = (f.metadata or {}).get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{help_text} (default: {default})".strip()
        if base is bool:  # a switch: --disc / --no-disc
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(base) in (tuple, list):
            inner = typing.get_args(base)[0] if typing.get_args(base) else str
            parser.add_argument(flag, type=inner, nargs="+", default=None, help=help_text)
        elif base in (int, float, str):
            parser.add_argument(flag, type=base, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=str, default=None, help=help_text)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    else:
        data = json.loads(text)
    return {k.replace("-", "_"): v for k, v in data.items()}


@dataclasses.dataclass
class TrainLoopConfig:
    """Settings every trainer shares (data, optimiser, runtime, resuming); the trainers' configs
    add their own and set their defaults."""

    data_root: str | None = dataclasses.field(
        default=None, metadata={"help": "preprocessed root (upstream layout)"}
    )
    cache: str | None = dataclasses.field(
        default=None, metadata={"help": "packed cache from `python -m train cache`"}
    )
    train_list: str = "filelists/train.txt"
    val_list: str = "filelists/val.txt"
    accum: int = dataclasses.field(default=1, metadata={"help": "gradient accumulation micro-steps"})
    lr: float = 1e-4
    optimizer: str = dataclasses.field(default="adam", metadata={"help": "adam (upstream), adamw or sgd"})
    weight_decay: float = 0.0
    keep_checkpoints: int = 3
    log_interval: int = 100
    num_workers: int = 4
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    sync_bn: bool = True
    resume: str = dataclasses.field(
        default="auto", metadata={"help": "auto (latest in checkpoint_dir), none, or a path"}
    )
    init_checkpoint: str | None = dataclasses.field(default=None, metadata={"help": "start from these weights"})
    max_redraws: int = 100
    tensorboard: bool = True
    force: bool = dataclasses.field(
        default=False, metadata={"help": "resume although settings that shape the training changed"}
    )


# Settings that may change between a run and its resumption (schedule length, logging, hardware).
RESUMABLE_CHANGES = frozenset({
    "max_steps", "eval_interval", "eval_batches", "checkpoint_interval", "sample_interval", "log_interval",
    "keep_checkpoints", "num_workers", "device", "resume", "tensorboard", "force", "target_loss",
    "checkpoint_dir", "data_root", "cache", "train_list", "val_list", "init_checkpoint", "init_disc_checkpoint",
})


def changed_settings(saved: dict[str, Any] | None, cfg: Any) -> list[str]:
    """``name: old -> new`` for each setting that shapes training and differs from the checkpoint's."""
    if not saved:
        return []
    now = to_dict(cfg)
    return [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in sorted(now)
            if k in saved and k not in RESUMABLE_CHANGES and saved[k] != now[k]]


def check_resume(saved: dict[str, Any] | None, cfg: Any, path: Any) -> None:
    """Refuse to continue a run with other settings (the step count would mean something else)."""
    diff = changed_settings(saved, cfg)
    if diff and not cfg.force:
        raise ValueError(f"{path}: the checkpoint was trained with other settings ({'; '.join(diff)}); "
                         "pass --force to resume anyway, or --resume none (or another --checkpoint-dir) to start over")
    if diff:
        log.warning("resuming with changed settings: %s", "; ".join(diff))


def build_config(cls: type[T], args: argparse.Namespace | None = None, file: str | Path | None = None,
                 **overrides: Any) -> T:
    """Defaults, then the file, then non-None CLI values, then keyword overrides."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if file:
        data = read_config_file(file)
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{file}: unknown settings {sorted(unknown)}")
        values.update(data)
    if args is not None:
        values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    values.update(overrides)
    hints = typing.get_type_hints(cls)
    for k, v in list(values.items()):
        if isinstance(v, list) and typing.get_origin(hints[k]) is not list:
            values[k] = tuple(v)
    return cls(**values)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-able dict (stored in checkpoints: loadable with weights_only=True)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))
