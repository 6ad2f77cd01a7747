"""``wav2lip-uhq batch MANIFEST | --faces DIR --audios DIR``: many rows, resumable, local or on Ray."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import InputError
from .arguments import add_option_arguments, option_values

log = logging.getLogger("wav2lip_uhq")
PER_ROW = ("out", "debug_video")  # one file per row: a manifest column, never a flag for all rows


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The batch's own arguments, then every ``run`` option (applied to every row)."""
    b = parser.add_argument_group("batch")
    b.add_argument("manifest", nargs="?", type=Path,
                   help="CSV or JSONL: columns face, audio, out and any run option by its long name")
    b.add_argument("--faces", type=Path, help="a folder of face videos/images (instead of a manifest)")
    b.add_argument("--audios", type=Path, help="a folder of audios paired by name or number, or one audio for all")
    b.add_argument("--out-dir", type=Path, default=Path("results"),
                   help="where rows without an out column go, and relative out names (default: results)")
    b.add_argument("--summary", type=Path, help="the JSON summary (default: OUT_DIR/batch_summary.json)")
    b.add_argument("--workers", type=int, help="processes on this machine (one GPU each where there are several), "
                   "or with --ray the number of actors")
    b.add_argument("--ray", metavar="ADDRESS", help="run on Ray: a cluster address, auto, or local")
    b.add_argument("--ray-gpus", type=float, help="GPUs per Ray actor, a fraction shares one (default: 1 if the "
                   "cluster has GPUs, else 0)")
    b.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs per Ray actor (default 1)")
    b.add_argument("--retries", type=int, default=1,
                   help="more attempts for a row whose worker died or failed for a reason other than its input "
                   "(default 1)")
    add_option_arguments(parser, exclude=PER_ROW)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def batch_rows(args: argparse.Namespace):
    """The validated rows of the command line (``ManifestError`` lists every bad row)."""
    from ..batch import read_manifest, rows_from_folders

    base = option_values(args)
    if args.manifest is not None and (args.faces or args.audios):
        raise InputError("give a manifest or --faces/--audios, not both")
    if args.manifest is not None:
        return read_manifest(args.manifest, base, args.out_dir)
    if args.faces is None or args.audios is None:
        raise InputError("give a MANIFEST (.csv or .jsonl), or both --faces DIR and --audios DIR")
    return rows_from_folders(args.faces, args.audios, base, args.out_dir)


def resolve_checkpoints(rows, quiet: bool) -> None:
    """Each distinct generator checkpoint found (downloaded once, here) before the workers start."""
    from ..checkpoints import resolve_checkpoint
    from .commands import _download_bar

    resolved: dict[tuple, Path] = {}
    for row in rows:
        c = row.config
        key = (str(c.checkpoint), str(c.models_dir), c.allow_download)
        if key not in resolved:
            resolved[key] = resolve_checkpoint(c.checkpoint, c.models_dir, c.allow_download, _download_bar(quiet))
        c.checkpoint = resolved[key]


def backend_for(args: argparse.Namespace, device: str):
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1 (got {args.workers})")
    if args.ray:
        from ..batch.ray_backend import RayBackend, import_ray

        import_ray()  # a missing Ray is one line, before anything runs
        return RayBackend(args.ray, args.workers, args.ray_gpus, args.ray_cpus, device)
    if args.workers and args.workers > 1:
        from ..batch.workers import WorkerPool

        return WorkerPool(args.workers, device)
    from ..batch import SerialBackend

    return SerialBackend(device=device)


def cmd_batch(args: argparse.Namespace) -> int:
    from ..batch import BatchRunner
    from ..batch.progress import BatchProgress
    from ..devices import check_device_name

    if args.retries < 0:
        raise InputError(f"--retries must be 0 or more (got {args.retries})")
    rows = batch_rows(args)  # every row validated before anything loads
    device = rows[0].config.device
    for row in rows:
        check_device_name(row.config.device)
    backend = backend_for(args, device)
    if not args.ray:  # on a cluster the nodes find the models themselves
        resolve_checkpoints(rows, args.quiet)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = args.summary or args.out_dir / "batch_summary.json"
    progress = BatchProgress(len(rows), args.quiet)
    runner = BatchRunner(backend, summary_path, progress, args.retries, source=str(args.manifest or args.faces))
    try:
        summary = runner.run(rows)
    except KeyboardInterrupt:
        progress.close()
        print(f"interrupted; finished rows are kept, run the same command again to resume ({summary_path})",
              file=sys.stderr)
        return 130
    progress.close()
    counts = summary.counts()
    print(f"batch: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed of "
          f"{len(rows)} rows; summary in {summary_path}")
    return 1 if counts["failed"] or counts["cancelled"] else 0
