"""The commands: ``run``, ``models`` (list / download) and ``app``."""

from __future__ import annotations

import logging
import sys
import time

from ..errors import InputError

log = logging.getLogger("wav2lip_uhq")


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


def check_inputs(args) -> None:
    """What can be checked before torch loads: the inputs exist and are files."""
    for what, path in (("face", args.face), ("audio", args.audio)):
        if not path.is_file():
            raise InputError(f"{path}: {what} file not found" if not path.exists() else f"{path}: not a file")


def speak_for_run(args) -> bool:
    """``--text`` / ``--text-file``: speak the text into a cached WAV that becomes ``args.audio``.
    True when the audio was spoken; exactly one of audio and text is required."""
    from ..speech import options_from_values, speak_options, text_of
    from .arguments import option_values

    values = option_values(args)
    opts = options_from_values(values)
    has_text = bool(opts.text.strip() or opts.text_file)
    if args.audio is not None and has_text:
        raise InputError("give --audio or --text / --text-file, not both")
    if args.audio is not None:
        return False
    if not has_text:
        raise InputError("give --audio, or --text / --text-file to speak")
    if not text_of(opts):
        raise InputError(f"{opts.text_file}: the text file is empty" if opts.text_file else "--text is empty")
    args.audio = speak_options(opts, cache_dir=values.get("cache_dir"), models_dir=values.get("models_dir"),
                               allow_download=values.get("allow_download", True),
                               progress=_download_bar(args.quiet))
    log.info("spoken audio: %s", args.audio)
    return True


def add_split_arguments(parser) -> None:
    """``run --workers N`` / ``--ray``: one long run split into time segments run in parallel."""
    g = parser.add_argument_group("one run across workers (time segments, joined without re-encoding)")
    g.add_argument("--workers", type=int, metavar="N", help="split the run into N segments run by N processes on this machine "
                   "(one GPU each where there are several), or with --ray by N actors")
    g.add_argument("--ray", metavar="ADDRESS", help="run the segments on Ray: a cluster address, auto, or local")
    g.add_argument("--ray-gpus", type=float, help="GPUs per Ray actor (default: 1 if the cluster has GPUs, else 0)")
    g.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs per Ray actor (default 1)")


def _split(args) -> bool:
    return bool(args.ray) or (args.workers is not None and args.workers != 1)


def _run_split(args, config, update):
    """``--workers N`` / ``--ray``: the segments on a batch backend, then the join."""
    from ..batch.segments import run_split
    from .batch import backend_for

    backend = backend_for(args, config.device)
    parts = args.workers or 2
    return run_split(config, backend, parts, update)


def cmd_run(args) -> int:
    from ..options import field_values
    from .arguments import config_from_args, option_values

    field_values(option_values(args))  # every option validated before anything is spoken or loaded
    spoken = speak_for_run(args)
    config = config_from_args(args)
    check_inputs(args)
    from ..outputs import check_output

    check_output(config)  # the output's name, container and codecs, before torch loads
    from ..speakers import check_timing

    check_timing(config)  # speakers' audio, ranges inside the video
    from ..devices import check_device_name

    check_device_name(config.device)
    if _split(args):  # what cannot be split: one line before models load
        from ..batch.segments import check_splittable

        if args.workers is not None and args.workers < 1:
            raise InputError(f"--workers must be at least 1 (got {args.workers})")
        check_splittable(config)
    fetch_models(config, args.quiet)
    from ..pipeline import run

    update, close = _progress_bar(args.quiet)
    t0 = time.perf_counter()
    try:
        result = _run_split(args, config, update) if _split(args) else run(config, progress=update)
    finally:
        close()
    seconds = time.perf_counter() - t0 if _split(args) else result.timings["total"]
    parts = f" in {len(result.segments)} segments" if _split(args) else ""
    msg = f"wrote {result.output} ({result.frames} frames at {result.fps:g} fps{parts}, {seconds:.1f} s)"
    if getattr(result, "frames_without_face", 0):
        msg += f"; {result.frames_without_face} frames without a face were left unchanged"
    if spoken:
        from ..ui_runner import save_speech

        saved = save_speech(config, result.output)
        if saved is not None:
            msg += f"; spoken audio saved as {saved}"
    print(msg)
    for kind, path in getattr(result, "extra_outputs", {}).items():
        print(f"also wrote {kind}: {path}")
    for note in getattr(result, "notes", ()):
        print(f"note: {note}")
    return 0


def cmd_jobs(args) -> int:
    """``jobs``: the interrupted runs (key, frames done, inputs -> output), or ``--discard`` one."""
    from ..resume import discard_job, interrupted_jobs, list_jobs

    if args.discard:
        keys = [j.key for j in interrupted_jobs(args.cache_dir)] if args.discard == "all" else [args.discard]
        for key in keys:
            if not discard_job(args.cache_dir, key):
                raise InputError(f"{args.discard}: no job has this key, or several start with it "
                                 "(`wav2lip-uhq jobs` lists them)")
            print(f"discarded job {key}")
        return 0
    jobs = list_jobs(args.cache_dir)
    if not jobs:
        print("no interrupted jobs")
        return 0
    for job in jobs:
        print(f"{job.key[:12]}  {'running' if job.running else 'interrupted':<11}  {job.describe()}")
        print(f"{'':14}{job.out}")
    return 0


def cmd_voices(args) -> int:
    """The voices of one engine, by language: the ids ``run --voice`` takes."""
    from ..speech import default_voice, voice_list

    default = default_voice(args.tts_engine)
    rows = [(lang, vid, label) for lang, vid, label in voice_list(args.tts_engine, args.models_dir)
            if not args.language or lang == args.language]
    if not rows:
        from ..speech import espeak

        why = (' (the offline voice needs espeakng-loader: pip install "wav2lip-uhq[speech]")'
               if args.tts_engine == "espeak" and not espeak.available() else "")
        print(f"error: no {args.tts_engine} voice for language {args.language or 'any'!r}{why}", file=sys.stderr)
        return 2
    for lang, vid, label in rows:
        print(f"{lang:<6} {vid:<26} {label.split(' — ', 1)[-1]}{'  (default)' if vid == default else ''}")
    return 0


def fetch_models(config, quiet: bool) -> None:
    """Every released model the run needs, present or downloaded now (each with its own progress
    bar), so that a missing one is reported once with all the others, before any work starts."""
    from ..checkpoints import download, resolve_checkpoint
    from ..errors import CheckpointError
    from ..model_needs import check_models_present, missing_checkpoints, missing_message

    check_models_present(config)  # downloads off: one line naming every missing file
    missing = missing_checkpoints(config)
    for name, _ in missing:
        try:
            download(name, config.models_dir, _download_bar(quiet))
        except CheckpointError as exc:
            still = missing_checkpoints(config)
            raise CheckpointError(missing_message(still, f"could not download {name} ({exc})")) from None
    config.checkpoint = resolve_checkpoint(config.checkpoint, config.models_dir, config.allow_download,
                                           _download_bar(quiet))


def cmd_models(args) -> int:
    from ..checkpoints import download, list_checkpoints, models_dir

    if args.models_command == "download":
        directory = args.models_dir_dl or args.models_dir
        for name in args.names:
            path = download(name, directory, _download_bar(False))
            print(f"downloaded {name} to {path}")
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
    from ..ui import launch
    from ..ui_runner import UIRunner

    host = "0.0.0.0" if args.listen else "127.0.0.1"
    if args.port is not None and not port_free(host, args.port):
        print(f"error: port {args.port} on {host} is in use; choose another with --port", file=sys.stderr)
        return 2
    runner = UIRunner(args.results_dir, args.models_dir, args.cache_dir, args.device)
    try:
        launch(listen=args.listen, port=args.port, share=args.share == "public", runner=runner)
    except OSError as exc:  # gradio found no free port in its range, or lost a race for ours
        print(f"error: cannot serve the app on {host}: {exc}; choose a free port with --port", file=sys.stderr)
        return 2
    return 0


def port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
