"""Command line: ``wav2lip-uhq run | batch | jobs | models | models download | app``.

``arguments``: the ``run`` options, generated from the option schema; ``commands``: what each
command does. Nothing heavy is imported before the arguments have been validated.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..errors import Wav2LipUHQError
from .arguments import add_run_arguments, config_from_args
from .batch import add_batch_arguments, cmd_batch
from .commands import add_split_arguments, cmd_app, cmd_jobs, cmd_models, cmd_run, cmd_voices

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wav2lip-uhq", description="Lip-sync a face video or photo to any audio (Wav2Lip, high quality)."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="lip-sync a face video/image to an audio file")
    add_run_arguments(r)
    add_split_arguments(r)

    b = sub.add_parser("batch", help="many face/audio pairs from a manifest or two folders (resumable; "
                       "--workers N, --ray ADDRESS)")
    add_batch_arguments(b)

    j = sub.add_parser("jobs", help="list interrupted runs (continue one with run ... --resume), or discard one")
    j.add_argument("--cache-dir", type=Path, help="cache folder (default: $WAV2LIP_UHQ_CACHE or ~/.cache/wav2lip-uhq)")
    j.add_argument("--discard", metavar="KEY", help="remove the job with this key (the first column; a prefix will "
                   "do), or 'all' for every interrupted one")

    m = sub.add_parser("models", help="list known checkpoints, or download one")
    m.add_argument("--models-dir", type=Path)
    msub = m.add_subparsers(dest="models_command")
    d = msub.add_parser("download", help="download a released checkpoint into the models folder")
    d.add_argument("names", nargs="+", metavar="NAME", help="one or more of the names `wav2lip-uhq models` lists")
    d.add_argument("--models-dir", type=Path, dest="models_dir_dl")

    v = sub.add_parser("voices", help="list the text-to-speech voices (for run --voice), by language")
    v.add_argument("--tts-engine", choices=("espeak", "piper"), default="espeak", help="espeak (default) or piper")
    v.add_argument("--language", help="only this language (en, de, fr...)")
    v.add_argument("--models-dir", type=Path, help="models folder (Piper voices put there by hand)")

    a = sub.add_parser("app", help='the standalone web app (needs gradio: pip install "wav2lip-uhq[ui]")')
    a.add_argument("--listen", action="store_true", help="serve on 0.0.0.0 (default: 127.0.0.1 only)")
    a.add_argument("--port", type=int, help="server port (default: gradio's, 7860 or the next free one)")
    a.add_argument(
        "--share",
        choices=("never", "public"),
        default="never",
        help="never (default); public: also open a temporary gradio.live link (needs internet)",
    )
    a.add_argument(
        "--results-dir", type=Path, default=Path("results"), help="where results go (default ./results)"
    )
    a.add_argument("--models-dir", type=Path, help="models folder")
    a.add_argument("--cache-dir", type=Path, help="cache folder for face detections")
    a.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    return p


def _refine_options(args: argparse.Namespace):
    """The refinement options of a parsed ``run`` command line."""
    return config_from_args(args).refine


def configure_process() -> None:
    """Process-wide settings for a process the CLI owns (never applied inside the WebUI).

    OpenMP threads that wait passively leave the cores to the decoder, the encoder and the
    compositing while the generator is between layers: on a 2-core CPU about 5 % more frames/s
    end to end (bench/bench_engine.py). Only effective before torch is imported, and a value
    the user set wins.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def os_error_message(exc: OSError) -> str:
    """``<file>: <what went wrong>`` for an I/O error, without a traceback."""
    what = exc.strerror or str(exc)
    return f"{exc.filename}: {what}" if exc.filename else what


def main(argv: list[str] | None = None) -> int:
    configure_process()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    commands = {"run": cmd_run, "batch": cmd_batch, "models": cmd_models, "app": cmd_app, "voices": cmd_voices,
                "jobs": cmd_jobs}
    try:
        return commands[args.command](args)
    except (Wav2LipUHQError, ValueError) as exc:  # ValueError: invalid options from the config objects
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, a folder removed, a file vanished during the run: one line
        print(f"error: {os_error_message(exc)}; no output written", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; no output written{_resume_hint(args)}", file=sys.stderr)
        return 130


def _resume_hint(args: argparse.Namespace) -> str:
    """What continues an interrupted ``run`` whose segments are kept (``resume``), for the message."""
    if args.command != "run":
        return ""
    from ..resume import not_resumable

    try:
        resumable = not_resumable(config_from_args(args)) is None
    except (ValueError, Wav2LipUHQError):
        return ""
    return " (the finished segments are kept: the same command with --resume continues it)" if resumable else ""


__all__ = ["EXAMPLES", "build_parser", "configure_process", "main"]
