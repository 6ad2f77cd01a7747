"""The ``run`` command's arguments, made from the option schema (``wav2lip_uhq.options``).

Every declared option with a CLI flag becomes one argument in its group, with the declared
choices, range check and help; argparse's own defaults are suppressed, so an option not given
takes the dataclass default: the one default there is.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..options import GROUPS, Option, OptionError, coerce, part_owner, registry


def _typed(opt: Option):
    """An argparse ``type`` that validates with the option's own rule (same message as the UI)."""

    def parse(text: str) -> Any:
        try:
            return coerce(opt, text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = opt.kind  # argparse names the type in some messages
    return parse


def help_text(opt: Option) -> str:
    default = opt.ui_default()
    if opt.kind == "bool" or default in (None, "", [], ()):
        return opt.help
    if isinstance(default, list):
        default = " ".join(str(v) for v in default)
    return f"{opt.help} (default: {default})".replace("%", "%%")


def _argument(group, opt: Option) -> None:
    kw: dict[str, Any] = dict(dest=opt.key, default=argparse.SUPPRESS, help=help_text(opt))
    k = opt.kind
    if k == "bool":
        kw["action"] = argparse.BooleanOptionalAction
    elif k == "choice":
        kw["choices"] = opt.choices
    elif k in ("int", "float"):
        kw.update(type=_typed(opt), metavar="N")
    elif k in ("ints4", "box"):
        kw.update(nargs=4, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"))
    elif k == "choice_set":  # --extra-outputs raw,mask
        kw.update(type=_typed(opt), metavar="{" + ",".join(opt.choices) + "}[,...]")
    elif k in ("controlnets", "loras", "paths", "ranges", "speakers"):
        kw["action"] = "append"
        kw["metavar"] = {"controlnets": "MODEL[:PRE[:WEIGHT[:START:END]]]", "loras": "FILE[:WEIGHT]",
                         "ranges": "START-END[@OFFSET]", "speakers": "INDEX:AUDIO[:RANGES]"}.get(k, "FILE")
    group.add_argument(opt.flag, **kw)
    for alias in opt.cli_aliases:  # "--nosmooth=none": upstream's flags, kept
        flag, _, const = alias.partition("=")
        group.add_argument(flag, dest=opt.key, action="store_const", const=const, default=argparse.SUPPRESS,
                           help=f"same as {opt.flag} {const}")


def add_option_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One argument group per option group, every option with a CLI flag (but the ``exclude`` keys):
    shared by ``run`` and ``batch``."""
    groups = {name: parser.add_argument_group(title) for name, title in GROUPS.items()}
    for opt in registry().values():
        if opt.flag is not None and opt.key not in exclude:
            _argument(groups[opt.group], opt)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--face``, ``--audio`` and one argument group per option group."""
    parser.add_argument("--face", required=True, type=Path, help="video or image with a face")
    parser.add_argument("--audio", type=Path, help="any audio file FFmpeg reads (or a video's audio); or speak "
                        "--text / --text-file instead")
    add_option_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The options the command line gave (by key); the rest keep their declared defaults."""
    return {k: v for k, v in vars(args).items() if part_owner(k) is not None}


def config_from_args(args: argparse.Namespace):
    """The ``RunConfig`` of a parsed ``run`` command line (``ValueError`` names a bad option)."""
    from ..options import config_from_values

    return config_from_values(option_values(args), args.face, args.audio)
