"""Command line: ``wav2lip-uhq run | models | models download``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import Wav2LipUHQError

log = logging.getLogger("wav2lip_uhq")

EXAMPLES = Path(__file__).parent / "examples"


def _four_ints(name: str):
    return dict(nargs=4, type=int, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wav2lip-uhq", description="Lip-sync a face video or photo to any audio (Wav2Lip, high quality)."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="lip-sync a face video/image to an audio file")
    r.add_argument("--face", required=True, type=Path, help="video or image with a face")
    r.add_argument(
        "--audio", required=True, type=Path, help="any audio file FFmpeg reads (or a video's audio)"
    )
    r.add_argument("--checkpoint", help="generator checkpoint: a path or a known name (default: wav2lip_gan)")
    r.add_argument("--out", type=Path, help="output file (default: a new name in ./results)")
    r.add_argument(
        "--mode",
        choices=("fast", "feather"),
        default="feather",
        help="fast: upstream's hard box paste; feather (default): blended lower face",
    )
    g = r.add_argument_group("faces")
    g.add_argument(
        "--detector", choices=("s3fd", "dlib"), default="s3fd", help="face detector (default s3fd)"
    )
    g.add_argument("--box", **_four_ints("box"), help="fixed face box, skips detection (upstream order)")
    g.add_argument(
        "--pads",
        **_four_ints("pads"),
        default=(0, 10, 0, 0),
        help="padding around the face (default 0 10 0 0)",
    )
    g.add_argument(
        "--smoothing",
        choices=("centered", "upstream", "none"),
        default="centered",
        help="box smoothing over time: centered (no lag, default), upstream (5-frame forward mean)",
    )
    g.add_argument("--nosmooth", action="store_true", help="same as --smoothing none")
    g.add_argument(
        "--face-index", type=int, help="which face when several: N-th from the left (default: largest)"
    )
    g.add_argument(
        "--detect-max-size",
        type=int,
        default=720,
        help="downscale frames to this long side for detection (0: full size; default 720)",
    )
    g.add_argument("--face-det-batch-size", type=int, default=16)
    f = r.add_argument_group("frames")
    f.add_argument("--resize-factor", type=int, default=1, help="divide the frame size by this factor")
    f.add_argument("--crop", **_four_ints("crop"), default=(0, -1, 0, -1), help="crop the frames (-1: full)")
    f.add_argument("--rotate", action="store_true", help="rotate frames 90 degrees clockwise")
    f.add_argument("--fps", type=float, default=25.0, help="frame rate for a still image (default 25)")
    f.add_argument(
        "--loop",
        choices=("forward", "pingpong"),
        default="forward",
        help="how a video shorter than the audio repeats",
    )
    f.add_argument("--pingpong", action="store_true", help="same as --loop pingpong")
    k = r.add_argument_group("compositing (improved / enhanced)")
    k.add_argument("--landmarks", choices=("auto", "fan", "dlib"), default="auto",
                   help="68-point landmarks: fan (with s3fd) or dlib (offline); auto picks by detector")
    k.add_argument("--mask-region", choices=("lower_face", "mouth"), default="lower_face",
                   help="lower_face: lips, chin, lower cheeks (default); mouth: lips and around")
    k.add_argument("--mask-dilate", type=float, default=0.0, help="grow (+) / shrink (-) the mask, fraction of face width")
    k.add_argument("--mask-feather", type=float, default=0.12, help="soft edge width, fraction of face width")
    k.add_argument("--no-colour-match", action="store_true", help="keep the generator's colours")
    k.add_argument("--sharpen", type=float, default=0.0, help="unsharp amount for the new mouth (e.g. 0.5)")
    k.add_argument("--regrain", action="store_true", help="add the original's grain to the new mouth")
    k.add_argument("--blend", choices=("alpha", "laplacian", "poisson"), default="alpha")
    k.add_argument("--aligned", action="store_true", help="rotate tilted heads upright for the generator")
    k.add_argument("--silence", choices=("off", "close", "keep"), default="off",
                   help="where the audio is silent: close the mouth, or keep the original frame")
    k.add_argument("--restorer", type=Path, help="enhanced: GFPGAN/CodeFormer/RestoreFormer checkpoint (default GFPGANv1.4)")
    k.add_argument("--restore-strength", type=float, default=0.7, help="0: original .. 1: fully restored")
    k.add_argument("--fidelity", type=float, default=0.7, help="CodeFormer fidelity weight")
    k.add_argument("--upscaler", type=Path, help="enhanced: super-resolution checkpoint for the 96 px output")
    k.add_argument("--parser", type=Path, help="face-parsing BiSeNet checkpoint (79999_iter.pth): never paint over hair, hands, occluders")
    k.add_argument("--parser-keep-neck", action="store_true", help="with --parser: let the new chin extend over the neck")
    k.add_argument("--debug-video", type=Path, help="also write result | mask+landmarks overlay, side by side")
    o = r.add_argument_group("output")
    o.add_argument(
        "--crf", type=int, default=16, help="H.264 quality, lower is better (default 16: visually lossless)"
    )
    o.add_argument("--preset", default="medium", help="x264 preset (default medium)")
    o.add_argument("--lossless", action="store_true", help="exact RGB frames: FFV1 + FLAC in .mkv")
    c = r.add_argument_group("compute")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    c.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                   help="generator precision: auto = fp16 on CUDA, bf16 on CPUs with native bf16 (not in fast mode)")
    c.add_argument("--batch-size", type=int, default=32, help="generator batch size")
    c.add_argument(
        "--models-dir",
        type=Path,
        help="models folder (default: $WAV2LIP_UHQ_MODELS or ~/.cache/wav2lip-uhq/models)",
    )
    c.add_argument("--cache-dir", type=Path, help="cache folder for face detections")
    c.add_argument("--no-download", action="store_true", help="never download a missing checkpoint")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    m = sub.add_parser("models", help="list known checkpoints, or download one")
    m.add_argument("--models-dir", type=Path)
    msub = m.add_subparsers(dest="models_command")
    d = msub.add_parser("download", help="download a released checkpoint into the models folder")
    d.add_argument("name")
    d.add_argument("--models-dir", type=Path, dest="models_dir_dl")
    return p


def _progress_bar(quiet: bool):
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    state = {"bar": None, "stage": None}

    def update(stage: str, done: int, total: int) -> None:
        if total <= 1:  # one-step stages: no bar
            log.info("%s", stage)
            return
        if state["stage"] != stage:
            if state["bar"] is not None:
                state["bar"].close()
            state["bar"] = tqdm(
                total=total, desc=stage, unit="frame" if total > 1 else "", leave=stage == "lip-sync"
            )
            state["stage"] = stage
        bar = state["bar"]
        bar.total = total
        bar.n = done
        bar.refresh()

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()

    return update, close


def _download_bar(quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm

    bar = {}

    def update(done: int, total: int) -> None:
        if "b" not in bar:
            bar["b"] = tqdm(total=total or None, unit="B", unit_scale=True, desc="download")
        bar["b"].n = done
        bar["b"].refresh()

    return update


def cmd_run(args) -> int:
    from .checkpoints import resolve_checkpoint
    from .config import CompositeOptions, FaceOptions, FrameOptions, RunConfig
    from .pipeline import run
    from .video import EncodeSettings

    config = RunConfig(
        face=args.face,
        audio=args.audio,
        out=args.out,
        checkpoint=args.checkpoint,
        mode=args.mode,
        faces=FaceOptions(
            detector=args.detector,
            box=tuple(args.box) if args.box else None,
            pads=tuple(args.pads),
            smoothing="none" if args.nosmooth else args.smoothing,
            face_index=args.face_index,
            detect_max_size=args.detect_max_size or None,
            batch_size=args.face_det_batch_size,
        ),
        frames=FrameOptions(
            resize_factor=args.resize_factor,
            crop=tuple(args.crop),
            rotate=args.rotate,
            fps=args.fps,
            loop="pingpong" if args.pingpong else args.loop,
        ),
        encode=EncodeSettings(crf=args.crf, preset=args.preset, lossless=args.lossless),
        composite=CompositeOptions(
            landmarks=args.landmarks,
            mask_region=args.mask_region,
            mask_dilate=args.mask_dilate,
            mask_feather=args.mask_feather,
            colour_match=not args.no_colour_match,
            sharpen=args.sharpen,
            regrain=args.regrain,
            blend=args.blend,
            aligned=args.aligned,
            silence=args.silence,
            restorer=args.restorer,
            restore_strength=args.restore_strength,
            fidelity=args.fidelity,
            upscaler=args.upscaler,
            parser=args.parser,
            parser_keep_neck=args.parser_keep_neck,
            debug_video=args.debug_video,
        ),
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        models_dir=args.models_dir,
        cache_dir=args.cache_dir,
        allow_download=not args.no_download,
    )
    # Fetch the checkpoint before the run so its download gets its own progress bar.
    config.checkpoint = resolve_checkpoint(
        config.checkpoint, config.models_dir, config.allow_download, _download_bar(args.quiet)
    )
    update, close = _progress_bar(args.quiet)
    try:
        result = run(config, progress=update)
    finally:
        close()
    msg = f"wrote {result.output} ({result.frames} frames at {result.fps:g} fps, {result.timings['total']:.1f} s)"
    if result.frames_without_face:
        msg += f"; {result.frames_without_face} frames without a face were left unchanged"
    print(msg)
    return 0


def cmd_models(args) -> int:
    from .checkpoints import download, list_checkpoints, models_dir

    if args.models_command == "download":
        directory = args.models_dir_dl or args.models_dir
        path = download(args.name, directory, _download_bar(False))
        print(f"downloaded {args.name} to {path}")
        return 0
    directory = models_dir(args.models_dir)
    print(f"models folder: {directory}  (set with --models-dir or WAV2LIP_UHQ_MODELS)")
    for ckpt, path, present in list_checkpoints(args.models_dir):
        mark = "present" if present else "missing"
        print(f"  {ckpt.name:<16} {mark:<8} {path.name:<20} {ckpt.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "models":
            return cmd_models(args)
    except Wav2LipUHQError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # invalid option combinations from the config objects
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no output written", file=sys.stderr)
        return 130
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
