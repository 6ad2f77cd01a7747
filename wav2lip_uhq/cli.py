"""Command line: ``wav2lip-uhq run | models | models download | app``."""

from __future__ import annotations

import argparse
import logging
import os
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
        choices=("fast", "feather", "improved", "enhanced", "uhq"),
        default="improved",
        help="fast: upstream's hard box paste; feather: blended lower-face rectangle; improved (default): "
        "landmark mask + colour match; enhanced: + face restoration; uhq: + SD img2img refinement",
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
    k.add_argument(
        "--landmarks",
        choices=("auto", "fan", "dlib"),
        default="auto",
        help="68-point landmarks: fan (with s3fd) or dlib (offline); auto picks by detector",
    )
    k.add_argument(
        "--mask-region",
        choices=("lower_face", "mouth"),
        default="lower_face",
        help="lower_face: lips, chin, lower cheeks (default); mouth: lips and around",
    )
    k.add_argument(
        "--mask-dilate",
        type=float,
        default=0.0,
        help="grow (+) / shrink (-) the mask, fraction of face width",
    )
    k.add_argument("--mask-feather", type=float, default=0.12, help="soft edge width, fraction of face width")
    k.add_argument("--no-colour-match", action="store_true", help="keep the generator's colours")
    k.add_argument("--sharpen", type=float, default=0.0, help="unsharp amount for the new mouth (e.g. 0.5)")
    k.add_argument("--regrain", action="store_true", help="add the original's grain to the new mouth")
    k.add_argument("--blend", choices=("alpha", "laplacian", "poisson"), default="alpha")
    k.add_argument("--aligned", action="store_true", help="rotate tilted heads upright for the generator")
    k.add_argument(
        "--silence",
        choices=("off", "close", "keep"),
        default="off",
        help="where the audio is silent: close the mouth, or keep the original frame",
    )
    k.add_argument(
        "--restorer",
        type=Path,
        help="enhanced: GFPGAN/CodeFormer/RestoreFormer checkpoint (default GFPGANv1.4)",
    )
    k.add_argument("--restore-strength", type=float, default=0.7, help="0: original .. 1: fully restored")
    k.add_argument("--fidelity", type=float, default=0.7, help="CodeFormer fidelity weight")
    k.add_argument("--upscaler", type=Path, help="enhanced: super-resolution checkpoint for the 96 px output")
    k.add_argument(
        "--parser",
        type=Path,
        help="face-parsing BiSeNet checkpoint (79999_iter.pth): never paint over hair, hands, occluders",
    )
    k.add_argument(
        "--parser-keep-neck", action="store_true", help="with --parser: let the new chin extend over the neck"
    )
    k.add_argument(
        "--debug-video", type=Path, help="also write result | mask+landmarks overlay, side by side"
    )
    s = r.add_argument_group("refinement (uhq)")
    s.add_argument(
        "--sd-checkpoint",
        type=Path,
        help="SD 1.5-family checkpoint: .safetensors/.ckpt or a diffusers folder",
    )
    s.add_argument(
        "--sd-config",
        type=Path,
        help="diffusers-layout configs + tokenizer for a single-file checkpoint (offline)",
    )
    s.add_argument(
        "--controlnet",
        action="append",
        default=[],
        metavar="MODEL[:PRE[:WEIGHT[:START:END]]]",
        help="ControlNet file/folder, preprocessor (canny, lineart, tile, mediapipe_face, none), weight, "
        "guidance start/end; repeatable",
    )
    s.add_argument("--prompt", help="refinement prompt (default: a mouth/teeth prompt)")
    s.add_argument("--negative-prompt", help="negative prompt")
    s.add_argument("--denoise", type=float, default=0.3, help="img2img strength (default 0.3)")
    s.add_argument(
        "--steps", type=int, default=20, help="sampler steps; about steps x denoise run (default 20)"
    )
    s.add_argument(
        "--cfg", type=float, default=5.0, help="classifier-free guidance (default 5; 1-2 for LCM/turbo)"
    )
    s.add_argument(
        "--sampler",
        default="dpm++_2m_karras",
        help="ddim, euler, euler_a, dpm++_2m, dpm++_2m_karras, unipc, lcm, turbo",
    )
    s.add_argument("--seed", type=int, default=1234, help="one seed for every frame (default 1234)")
    s.add_argument(
        "--refine-size", type=int, default=512, help="working size of the mouth crop (default 512)"
    )
    s.add_argument("--refine-every", type=int, default=1, help="refine every N-th frame, interpolate between")
    s.add_argument("--refine-batch", type=int, default=8, help="mouth crops per diffusion call (default 8)")
    s.add_argument(
        "--temporal-blend", type=float, default=0.0, help="0..1: blend of the previous frame's refinement"
    )
    s.add_argument(
        "--sync-tolerance", type=float, default=0.12, help="max mouth-opening change / mouth width (<0: off)"
    )
    s.add_argument(
        "--lora", action="append", default=[], metavar="FILE[:WEIGHT]", help="LoRA file; repeatable"
    )
    s.add_argument(
        "--embedding", action="append", default=[], metavar="FILE", help="textual inversion; repeatable"
    )
    s.add_argument("--attention-slicing", action="store_true", help="less GPU memory, slower")
    s.add_argument("--cpu-offload", action="store_true", help="model CPU offload (CUDA; small GPUs)")
    o = r.add_argument_group("output")
    o.add_argument(
        "--crf", type=int, default=16, help="H.264 quality, lower is better (default 16: visually lossless)"
    )
    o.add_argument("--preset", default="faster", help="x264 preset (default faster: as good as medium at the same CRF, cheaper)")
    o.add_argument("--lossless", action="store_true", help="exact RGB frames: FFV1 + FLAC in .mkv")
    c = r.add_argument_group("compute")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    c.add_argument(
        "--precision",
        choices=("auto", "fp32", "fp16", "bf16"),
        default="auto",
        help="generator precision: auto = fp16 on CUDA, bf16 on CPUs with native bf16 (not in fast mode)",
    )
    c.add_argument("--batch-size", type=int, default=32, help="generator batch size (at most; a batch also ends at 96 MiB of frames)")
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


def _refine_options(args):
    from .refine import DEFAULT_NEGATIVE, DEFAULT_PROMPT, ControlSpec, RefineOptions

    nets = []
    for spec in args.controlnet:
        model, *rest = spec.rsplit(":", 4) if spec.count(":") <= 4 else [spec]
        while rest and not Path(model).exists() and Path(f"{model}:{rest[0]}").exists():  # a ':' in the path
            model = f"{model}:{rest.pop(0)}"
        pre = rest[0] if rest else "canny"
        nums = [float(x) for x in rest[1:]]
        nets.append(
            ControlSpec(model, pre, *(nums[:1] or [1.0]), *(nums[1:3] if len(nums) >= 3 else (0.0, 1.0)))
        )
    loras = []
    for spec in args.lora:
        path, _, weight = (
            spec.rpartition(":") if spec.rpartition(":")[2].replace(".", "", 1).isdigit() else (spec, "", "1")
        )
        loras.append((path, float(weight)))
    return RefineOptions(
        checkpoint=args.sd_checkpoint,
        config_dir=args.sd_config,
        controlnets=tuple(nets),
        prompt=args.prompt or DEFAULT_PROMPT,
        negative_prompt=args.negative_prompt or DEFAULT_NEGATIVE,
        denoise=args.denoise,
        steps=args.steps,
        cfg=args.cfg,
        sampler=args.sampler,
        seed=args.seed,
        size=args.refine_size,
        every=args.refine_every,
        batch_size=args.refine_batch,
        temporal_blend=args.temporal_blend,
        sync_tolerance=None if args.sync_tolerance < 0 else args.sync_tolerance,
        loras=tuple(loras),
        embeddings=tuple(args.embedding),
        attention_slicing=args.attention_slicing,
        cpu_offload=args.cpu_offload,
    )


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
        refine=_refine_options(args),
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


def cmd_app(args) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print('error: the app needs gradio: pip install "wav2lip-uhq[ui]"', file=sys.stderr)
        return 2
    from .ui import launch
    from .ui_runner import UIRunner

    runner = UIRunner(args.results_dir, args.models_dir, args.cache_dir, args.device)
    launch(listen=args.listen, port=args.port, share=args.share == "public", runner=runner)
    return 0


def configure_process() -> None:
    """Process-wide settings for a process the CLI owns (never applied inside the WebUI).

    OpenMP threads that wait passively leave the cores to the decoder, the encoder and the
    compositing while the generator is between layers: on a 2-core CPU about 5 % more frames/s
    end to end (bench/bench_engine.py). Only effective before torch is imported, and a value
    the user set wins.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    configure_process()
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
        if args.command == "app":
            return cmd_app(args)
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
