"""``python -m train <command>``: the training pipeline from raw videos to engine checkpoints.

Commands: synthetic, preprocess, filelists, cache, synccorrect, syncnet, wav2lip, eval.
Multi-GPU: ``torchrun --nproc_per_node N -m train syncnet ...`` (same for wav2lip).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from wav2lip_uhq.errors import Wav2LipUHQError

from .config import add_dataclass_args, build_config
from .data import DataError
from .fid import FIDWeightsMissing


def _tuple_ints(text: str, n: int, what: str) -> tuple[int, ...]:
    parts = [int(p) for p in text.replace(",", " ").replace("/", " ").split()]
    if len(parts) != n:
        raise argparse.ArgumentTypeError(f"{what}: expected {n} integers, got {text!r}")
    return tuple(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synthetic", help="write a synthetic talking-face dataset (LRS2 raw layout)")
    p.add_argument("out")
    p.add_argument("--speakers", type=int, default=8)
    p.add_argument("--clips", type=int, default=4, help="clips per speaker")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--sr", type=int, default=16000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speech", default=None, help="cut audio from this speech file instead of synthetic syllables")

    p = sub.add_parser("preprocess", help="raw videos -> face crops + audio.wav (upstream layout)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--preprocessed-root", required=True)
    p.add_argument("--detector", default="s3fd",
                   help="s3fd (needs face-alignment and its s3fd weights) | dlib (offline, CPU) | box")
    p.add_argument("--box", nargs=4, type=int, default=None, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="fixed face box, skips detection (as in `wav2lip-uhq run`)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--shard", default="0/1", help="i/N: process every N-th video starting at i")
    p.add_argument("--pads", nargs=4, type=int, default=[0, 0, 0, 0], metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="pixels added to each side of every box")
    p.add_argument("--min-frames", type=int, default=16)
    p.add_argument("--layout", default="folder", choices=["lrs2", "folder", "cmlr", "grid", "hdtf"],
                   help="dataset layout (train/README.md 'Datasets'); folder: any nested folder of videos")
    p.add_argument("--audio-root", default=None, help="grid: <speaker>/<id>.wav files when the videos are silent")
    p.add_argument("--time-ranges", default=None, help="hdtf: its *_annotion_time.txt file or folder")
    p.add_argument("--max-seconds", type=float, default=None, help="hdtf: cut longer ranges into clips this long")
    p.add_argument("--filelists", default=None, help="also write train/val/test.txt into this folder")

    p = sub.add_parser("filelists", help="deterministic train/val/test split by folder")
    p.add_argument("--preprocessed-root", required=True)
    p.add_argument("--out", default="filelists")
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("cache", help="pack faces at training size + mel into memory-mapped arrays")
    p.add_argument("--preprocessed-root", required=True)
    p.add_argument("--filelists", nargs="+", required=True, help="filelists whose entries go in the cache")
    p.add_argument("--out", required=True)
    p.add_argument("--img-size", type=int, default=96)
    p.add_argument("--workers", type=int, default=1)

    p = sub.add_parser("synccorrect", help="estimate each clip's A/V offset; drop or shift clips")
    p.add_argument("--preprocessed-root", required=True)
    p.add_argument("--filelist", required=True)
    p.add_argument("--syncnet", required=True, help="our expert checkpoint, or syncnet_v2.model (LSE)")
    p.add_argument("--out", required=True, help="corrected filelist to write")
    p.add_argument("--tolerance", type=int, default=1, help="keep |offset| <= this many frames")
    p.add_argument("--max-shift", type=int, default=15)
    p.add_argument("--action", choices=["drop", "shift"], default="drop",
                   help="drop clips outside the tolerance, or shift their audio by the offset (rewrites audio.wav)")
    p.add_argument("--device", default="auto")
    p.add_argument("--report", default=None)
    p.add_argument("--force", action="store_true",
                   help="run with an expert whose recorded eval loss is near chance (its offsets are noise)")

    from .syncnet import SyncNetConfig
    from .wav2lip import Wav2LipConfig

    p = sub.add_parser("syncnet", help="train the expert lip-sync discriminator")
    p.add_argument("--config", default=None, help="JSON or TOML file; command-line flags override it")
    add_dataclass_args(p, SyncNetConfig)

    p = sub.add_parser("wav2lip", help="train the generator (--disc for the visual-quality GAN)")
    p.add_argument("--config", default=None)
    add_dataclass_args(p, Wav2LipConfig)

    p = sub.add_parser("eval", help="LSE-D/LSE-C (syncnet_python) or our expert's sync score; PSNR/SSIM "
                                    "(whole frame and mouth region); FID")
    p.add_argument("--lse-model", default=None, help="syncnet_v2.model from syncnet_python (LSE-D/LSE-C)")
    p.add_argument("--syncnet", default=None,
                   help="an expert from `python -m train syncnet`: its sync loss, offset and confidence per video")
    p.add_argument("--face-box", nargs=4, type=int, default=None, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="fixed face box: crops the faces for the sync scores, and its lower half is the mouth "
                        "region of PSNR/SSIM; default: detected with --crop detect, else the whole frame")
    p.add_argument("--videos", nargs="*", default=[], help="videos to score (any output video)")
    p.add_argument("--test-list", default=None, help="filelist of pairs 'generated.mp4 ground_truth.mp4' or entries")
    p.add_argument("--generated-root", default=None)
    p.add_argument("--gt-root", default=None)
    p.add_argument("--crop", choices=["full", "detect"], default="full",
                   help="full: resize whole frames to 224 (calculate_scores_LRS); detect: crop the face first")
    p.add_argument("--detector", default="s3fd")
    p.add_argument("--vshift", type=int, default=15)
    p.add_argument("--device", default="auto")
    p.add_argument("--fid", action="store_true", help="also compute FID (generated vs ground-truth frames of the pairs)")
    p.add_argument("--fid-weights", default=None,
                   help="torchvision inception_v3 state_dict for --fid (not downloaded)")
    p.add_argument("--out", default=None, help="write the results as JSON")

    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 logs, the others only warn
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _run(args)
    except (ValueError, DataError, Wav2LipUHQError, FIDWeightsMissing) as exc:  # bad input: one line, exit 2
        print(f"python -m train {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run(args: argparse.Namespace) -> None:
    from .syncnet import SyncNetConfig
    from .wav2lip import Wav2LipConfig

    if args.command == "synthetic":
        from .synthetic import make_dataset

        paths = make_dataset(args.out, args.speakers, args.clips, args.seconds, args.fps, args.sr, args.seed,
                             args.speech)
        print(f"wrote {len(paths)} clips under {args.out}")
    elif args.command == "preprocess":
        from .preprocess import PreprocessConfig, make_filelists, preprocess

        cfg = PreprocessConfig(
            args.data_root, args.preprocessed_root, "box" if args.box else args.detector,
            tuple(args.box) if args.box else None, args.device, args.batch_size, args.workers,
            _tuple_ints(args.shard, 2, "--shard"), pads=tuple(args.pads),
            min_frames=args.min_frames, layout=args.layout, audio_root=args.audio_root,
            time_ranges=args.time_ranges, max_seconds=args.max_seconds,
        )
        report = preprocess(cfg)
        print(f"{report['done']} of {report['videos']} videos preprocessed, {len(report['skipped'])} skipped")
        for s in report["skipped"]:
            print(f"  skipped {s['video']}: {s['reason']}")
        if args.filelists:
            splits = make_filelists(args.preprocessed_root, args.filelists)
            print(" ".join(f"{k}: {len(v)}" for k, v in splits.items()))
    elif args.command == "filelists":
        from .preprocess import make_filelists

        splits = make_filelists(args.preprocessed_root, args.out, args.val_fraction, args.test_fraction, args.seed)
        print(" ".join(f"{k}: {len(v)}" for k, v in splits.items()))
    elif args.command == "cache":
        from .data import build_cache
        from .preprocess import read_filelist

        entries = sorted({e for f in args.filelists for e in read_filelist(f)})
        info = build_cache(args.preprocessed_root, entries, args.out, args.img_size, args.workers)
        print(f"cached {info['videos']} videos, {info['frames']} frames; {len(info['skipped'])} skipped")
    elif args.command == "synccorrect":
        from .synccorrect import run_sync_correction

        report = run_sync_correction(args.preprocessed_root, args.filelist, args.syncnet, args.out,
                                     args.tolerance, args.max_shift, args.action, args.device, args.report,
                                     force=args.force)
        print(json.dumps(report["histogram"], indent=None))
        print(f"kept {report['kept']} of {report['clips']} clips -> {args.out}")
    elif args.command == "syncnet":
        from .syncnet import train

        result = train(build_config(SyncNetConfig, args, args.config))
        if os.environ.get("RANK", "0") == "0":  # torchrun: one summary line, from rank 0
            print(json.dumps(result, default=str))
    elif args.command == "wav2lip":
        from .wav2lip import train

        result = train(build_config(Wav2LipConfig, args, args.config))
        if os.environ.get("RANK", "0") == "0":
            print(json.dumps(result, default=str))
    elif args.command == "eval":
        from .evaluate import run_eval

        results = run_eval(args)
        print(json.dumps(results["summary"], indent=1))


if __name__ == "__main__":
    sys.exit(main())
