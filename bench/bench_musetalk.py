"""MuseTalk 1.5 end to end: our pipeline vs a re-implementation of MuseTalk's own inference
algorithm, on the same clip and the same full-size networks.

    python bench/bench_musetalk.py [--seconds 0.4] [--models DIR] [--device cpu|cuda] [--batch 8]
                                   [--height 360|720|1080] [--repeat 1]

Without ``--models`` the three networks are built at full size with the reference fill rule
(no download; speed does not depend on the values), once, and kept as safetensors in
``--nets`` (a cache folder) for every case and later invocations. Each case runs in its own
process (its peak memory is that process's), twice: a first run, then a second on the same
video with new audio (ours: the same pipeline object, as the UI keeps it; MuseTalk's:
``use_saved_coord``); ``--repeat`` interleaves the cases (ours, MuseTalk's, ours, ...).
Ours runs at ``--precision auto`` as a user's run does (bf16 on CPUs with native bf16, fp16 on
CUDA); MuseTalk's algorithm at its own default, fp32 (fp16 on CUDA, its ``--use_float16``).

MuseTalk's algorithm as its ``scripts/inference.py`` runs it (re-implemented here, not copied):
every frame extracted to PNG and read back, all frames in RAM, a box per frame from landmarks,
two VAE encodes per frame (masked, reference; batch 1), whisper features, batched UNet + decode,
then per frame: face parsing of the 1.5x crop at 512 px, the blend, a PNG written; then two
encodes (PNGs -> video, then the video re-encoded with the audio). Landmarks come from our dlib
predictor in both cases (MuseTalk uses DWPose, which is slower). Ours: ``improved`` mode (our
landmark masks; no parsing), the streaming pipeline with its caches.

Figures: frames per second end to end and of the generator stage (UNet + decode, + encodes where
a frame's latents are not known yet), peak RSS, the precision, and the load average (1 min)
before and after each run (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the reference fill rule and configs (musetalk_helpers)
EXAMPLES = ROOT / "wav2lip_uhq" / "examples"
FPS = 25
FILL_RULE_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wav2lip-uhq" / "bench-musetalk"


# -- inputs -------------------------------------------------------------------------------------
def clip_width(height: int) -> int:
    """16:9, even."""
    return (640 * height // 360) // 2 * 2


def make_clip(folder: Path, seconds: float, height: int = 360) -> tuple[Path, Path, Path]:
    """A 16:9 clip (``height`` rows) of the astronaut's head drifting, and two different cuts of the speech."""
    import cv2
    import skimage.data
    import soundfile as sf

    from wav2lip_uhq.video import EncodeSettings, VideoWriter, read_audio_track

    k = height / 360
    width = clip_width(height)
    head = cv2.resize(skimage.data.astronaut()[:, :, ::-1][0:300, 100:360], (int(208 * k), int(240 * k)))
    video = folder / "clip.mp4"
    n = max(1, int(seconds * FPS))
    with VideoWriter(video, width, height, Fraction(FPS), None, EncodeSettings()) as writer:
        for i in range(n):
            frame = np.full((height, width, 3), 110, np.uint8)
            x, y = int((200 + (i % 20)) * k), int((60 + (i % 10) // 2) * k)
            frame[y : y + head.shape[0], x : x + head.shape[1]] = head
            writer.write(frame)
    track = read_audio_track(EXAMPLES / "speech.m4a")
    mono = np.asarray(track.samples, np.float32).mean(axis=0)
    rate = track.sample_rate
    first, second = folder / "speech1.wav", folder / "speech2.wav"
    sf.write(first, mono[: int(seconds * rate)], rate)
    sf.write(second, mono[int(seconds * rate) : int(2 * seconds * rate)], rate)
    return video, first, second


def fill_rule_networks(folder: Path) -> Path:
    """The full-size fill-rule networks as safetensors in ``folder``, built once (about 15 s and
    4 GB of disk) and reused by every case and every later invocation."""
    from musetalk_helpers import VAE_CONFIG, WHISPER_CONFIG, built
    from safetensors.torch import save_file

    from wav2lip_uhq.models import musetalk as mt

    done = folder / "complete"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, builder, config in (("unet", mt.build_unet, mt.UNET_CONFIG), ("vae", mt.build_vae, VAE_CONFIG),
                                  ("whisper", mt.build_whisper_encoder, WHISPER_CONFIG)):
        state = {k: v.contiguous() for k, v in built(builder, config).state_dict().items()}
        save_file(state, str(folder / f"{name}.tmp"))
        (folder / f"{name}.tmp").replace(folder / f"{name}.safetensors")
    done.write_text("fill rule of shared/reference/musetalk/README.md\n")
    return folder


def networks(models: str | None, nets: Path, device: str, precision: str):
    """The full-size networks in ``precision``: the user's folder, or the cached fill-rule ones."""
    import torch
    from safetensors.torch import load_file

    from wav2lip_uhq.models import musetalk as mt

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    if models:
        return mt.load_networks(mt.find_files(models), device, dtype)
    from musetalk_helpers import PREPROCESSOR, VAE_CONFIG, WHISPER_CONFIG
    from transformers import WhisperFeatureExtractor

    def load(name, builder, config):
        model = builder(config)
        model.load_state_dict(load_file(str(nets / f"{name}.safetensors")), strict=True, assign=True)
        return model

    extractor = WhisperFeatureExtractor(
        **{k: v for k, v in PREPROCESSOR.items() if k not in ("feature_extractor_type", "processor_class")}
    )
    return mt.MuseTalkNetworks(
        load("unet", mt.build_unet, mt.UNET_CONFIG), load("vae", mt.build_vae, VAE_CONFIG),
        load("whisper", mt.build_whisper_encoder, WHISPER_CONFIG), extractor, "cpu", torch.float32,
    ).to(device, dtype)


# -- ours ---------------------------------------------------------------------------------------
class Timed:
    """The generator with the seconds its worker thread spends in prepare + generate."""

    def __init__(self, gen) -> None:
        self.gen, self.seconds = gen, 0.0
        self.img_size, self.reuse_prepared = gen.img_size, gen.reuse_prepared

    def audio_features(self, wav, fps, cover):
        return self.gen.audio_features(wav, fps, cover)

    def placement(self, geometry, index, aligned, frame_size):
        return self.gen.placement(geometry, index, aligned, frame_size)

    def prepare(self, frame, placement):
        t = time.perf_counter()
        out = self.gen.prepare(frame, placement)
        self.seconds += time.perf_counter() - t
        return out

    def generate(self, prepared, features):
        t = time.perf_counter()
        out = self.gen.generate(prepared, features)
        self.seconds += time.perf_counter() - t
        return out


def run_ours(nets, video: Path, audios: list[Path], work: Path, batch: int) -> list[dict]:
    from wav2lip_uhq.config import FaceOptions, RunConfig
    from wav2lip_uhq.generators.musetalk import MuseTalkGenerator
    from wav2lip_uhq.pipeline import LipSyncPipeline

    timed = Timed(MuseTalkGenerator(nets))
    pipe = LipSyncPipeline(nets.device, generator_factory=lambda c, d: timed)
    out = []
    for k, audio in enumerate(audios):
        timed.seconds, load0 = 0.0, os.getloadavg()[0]
        config = RunConfig(face=video, audio=audio, checkpoint="musetalk", out=work / f"ours{k}.mp4",
                           mode="improved", faces=FaceOptions(detector="dlib"), cache_dir=work / "cache",
                           batch_size=batch, device=nets.device)
        timed.gen = timed.gen.for_run(fast=False, fixed_box=False, cache_dir=config.cache_dir)
        result = pipe.run(config)
        out.append({"frames": result.frames, "total_s": result.timings["total"], "generator_s": timed.seconds,
                    "load": (load0, os.getloadavg()[0])})
    return out


# -- MuseTalk's algorithm -----------------------------------------------------------------------
def run_musetalk_algorithm(nets, video: Path, audios: list[Path], work: Path, batch: int) -> list[dict]:
    from wav2lip_uhq.faces.detection import create_detector
    from wav2lip_uhq.faces.landmarks import create_landmark_detector
    from wav2lip_uhq.models import musetalk as mt
    from wav2lip_uhq.parsing import BiSeNet, FaceParser

    detector, lms = create_detector("dlib"), create_landmark_detector("dlib")
    parser = FaceParser(BiSeNet(), device=nets.device, batch_size=1)  # its cost, not its answer
    out, coords = [], None
    for k, audio in enumerate(audios):
        t0, load0 = time.perf_counter(), os.getloadavg()[0]
        frames = _png_round_trip(video, work / f"frames{k}")
        if coords is None:  # the second run reuses them (use_saved_coord)
            coords = _boxes(frames, detector, lms)
        latents = [_two_encodes(nets, f, c) for f, c in zip(frames, coords)]
        prompts = _audio_prompts(nets, audio)
        cycle_f, cycle_c, cycle_l = frames + frames[::-1], coords + coords[::-1], latents + latents[::-1]
        t_gen = time.perf_counter()
        faces = []
        for s in range(0, len(prompts), batch):
            idx = range(s, min(s + batch, len(prompts)))
            lat = np.concatenate([cycle_l[i % len(cycle_l)] for i in idx])
            faces.extend(mt.generate_faces(nets, lat, prompts[s : s + len(idx)]))
        gen_s = time.perf_counter() - t_gen
        res_dir = work / f"result{k}"
        res_dir.mkdir()
        for i, face in enumerate(faces):
            j = i % len(cycle_f)
            frame = _blend(cycle_f[j].copy(), face, cycle_c[j], parser)
            _imwrite(res_dir / f"{i:08d}.png", frame)
        _two_video_encodes(res_dir, audio, work / f"musetalk{k}.mp4")
        out.append({"frames": len(faces), "total_s": time.perf_counter() - t0, "generator_s": gen_s,
                    "load": (load0, os.getloadavg()[0])})
    return out


def _imwrite(path: Path, img) -> None:
    import cv2

    cv2.imwrite(str(path), img)


def _png_round_trip(video: Path, folder: Path) -> list[np.ndarray]:
    """Every frame written as PNG, then all read back into RAM."""
    import cv2

    from wav2lip_uhq.video import iter_frames

    folder.mkdir()
    for i, frame in enumerate(iter_frames(video)):
        _imwrite(folder / f"{i:08d}.png", frame)
    return [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))]


def _boxes(frames, detector, lms) -> list[tuple[int, int, int, int]]:
    from wav2lip_uhq.generators.musetalk import EXTRA_MARGIN, musetalk_box

    out = []
    for f in frames:
        det = detector.detect([np.ascontiguousarray(f[:, :, ::-1])])[0]
        box = det[0, :4] if len(det) else np.array([0, 0, f.shape[1], f.shape[0]], np.float32)
        pts = lms.landmarks([f], box[None])[0]
        x1, y1, x2, y2 = musetalk_box(pts, tuple(int(v) for v in box))
        out.append((x1, y1, x2, min(y2 + EXTRA_MARGIN, f.shape[0])))
    return out


def _two_encodes(nets, frame, box) -> np.ndarray:
    """MuseTalk encodes the masked and the reference crop in two VAE calls of one image each."""
    import cv2

    from wav2lip_uhq.models import musetalk as mt

    x1, y1, x2, y2 = box
    crop = cv2.resize(frame[y1:y2, x1:x2], (256, 256), interpolation=cv2.INTER_LANCZOS4)
    masked = crop.copy()
    masked[128:] = 0
    a, b = mt.encode_faces(nets, masked[None]), mt.encode_faces(nets, crop[None])
    return np.concatenate([a[:, :4], b[:, 4:]], axis=1)


def _audio_prompts(nets, audio: Path) -> np.ndarray:
    from wav2lip_uhq.models import musetalk as mt
    from wav2lip_uhq.video import read_audio_track

    wav = read_audio_track(audio).mono(16000)
    steps = mt.whisper_steps(nets, wav)
    count = mt.frame_count(len(wav) / 16000, FPS, cover=False)
    return mt.frame_prompts(mt.pad_steps(steps, FPS), range(count), FPS)


def _blend(frame, face, box, parser):
    """MuseTalk's blend: parse the 1.5x square crop, keep the lower face, blur, composite."""
    import cv2

    x1, y1, x2, y2 = box
    face = cv2.resize(face, (x2 - x1, y2 - y1))
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    s = int(max(x2 - x1, y2 - y1) // 2 * 1.5)
    cx1, cy1 = max(0, cx - s), max(0, cy - s)
    cx2, cy2 = min(frame.shape[1], cx + s), min(frame.shape[0], cy + s)
    crop = frame[cy1:cy2, cx1:cx2].copy()
    labels = parser.parse([crop])[0]
    mask = np.isin(labels, (1, 11, 12, 13)).astype(np.uint8) * 255
    mask = cv2.dilate(mask, np.ones((33, 33), np.uint8))
    mask[: int(0.5 * mask.shape[0])] = 0
    k = int(0.05 * crop.shape[0] // 2 * 2) + 1
    alpha = cv2.GaussianBlur(mask, (k, k), 0).astype(np.float32)[..., None] / 255.0
    pasted = crop.copy()
    pasted[y1 - cy1 : y2 - cy1, x1 - cx1 : x2 - cx1] = face
    frame[cy1:cy2, cx1:cx2] = (pasted * alpha + crop * (1 - alpha)).astype(np.uint8)
    return frame


def _two_video_encodes(folder: Path, audio: Path, out: Path) -> None:
    """PNGs -> a silent video, then that video decoded and encoded again with the audio."""
    import cv2

    from wav2lip_uhq.video import EncodeSettings, VideoWriter, iter_frames, read_audio_track

    pngs = sorted(folder.glob("*.png"))
    first = cv2.imread(str(pngs[0]))
    h, w = first.shape[:2]
    silent = out.with_name(out.stem + "_silent.mp4")
    with VideoWriter(silent, w, h, Fraction(FPS), None, EncodeSettings()) as writer:
        for p in pngs:
            writer.write(cv2.imread(str(p)))
    with VideoWriter(out, w, h, Fraction(FPS), read_audio_track(audio), EncodeSettings()) as writer:
        for frame in iter_frames(silent):
            writer.write(frame)


# -- driver -------------------------------------------------------------------------------------
def precision_of(case: str, args) -> str:
    """Ours: ``--precision`` (auto: what a user's run picks); MuseTalk's: its default, fp32
    (fp16 on CUDA, as its users run it with ``--use_float16``)."""
    from wav2lip_uhq.devices import resolve_precision

    if case == "ours":
        return resolve_precision(args.precision, args.device, "improved")
    return "fp16" if args.device.startswith("cuda") else "fp32"


def worker(case: str, args) -> None:
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    work = Path(args.work) / f"{case}{args.round}"
    work.mkdir(parents=True)
    video, a1, a2 = Path(args.work) / "clip.mp4", Path(args.work) / "speech1.wav", Path(args.work) / "speech2.wav"
    t = time.perf_counter()
    precision = precision_of(case, args)
    nets = networks(args.models, Path(args.nets), args.device, precision)
    load_s = time.perf_counter() - t
    runner = run_ours if case == "ours" else run_musetalk_algorithm
    runs = runner(nets, video, [a1, a2], work, args.batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None
    print(json.dumps({"case": case, "load_s": load_s, "runs": runs, "peak_rss_mb": peak, "peak_gpu_mb": gpu,
                      "precision": precision}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=0.4, help="clip length (fractional: 0.4 s is 10 frames)")
    ap.add_argument("--height", type=int, default=360, help="clip height: 360 (640x360), 720 or 1080 (1920x1080)")
    ap.add_argument("--models", help="a MuseTalk models folder (default: full-size fill-rule networks)")
    ap.add_argument("--nets", default=str(FILL_RULE_CACHE), help="where the fill-rule networks are kept")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto", help="ours: auto (as a user's run), fp32, bf16, fp16")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cases", default="ours,musetalk")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds of the cases")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args)
    if not args.models:
        fill_rule_networks(Path(args.nets))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        make_clip(Path(tmp), args.seconds, args.height)
        for k in range(args.repeat):
            for case in args.cases.split(","):
                cmd = [sys.executable, __file__, "--worker", case, "--work", tmp, "--device", args.device,
                       "--batch", str(args.batch), "--threads", str(args.threads), "--nets", args.nets,
                       "--precision", args.precision, "--round", str(k)] + (
                    ["--models", args.models] if args.models else [])
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    sys.exit(f"{case} failed:\n{done.stderr[-3000:]}")
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(results[-1]), flush=True)  # the raw figures, as each case ends
    width = clip_width(args.height)
    print(f"{args.seconds:g} s of {width}x{args.height} video at {FPS} fps, device {args.device}, batch {args.batch}")
    print(f"{'case':<10} {'prec':<5} {'run':<7} {'frames':>6} {'seconds':>8} {'end-to-end fps':>15} "
          f"{'generator fps':>14} {'peak RSS MB':>12} {'load 1 min':>11}")
    for r in results:
        for name, run in zip(("first", "second"), r["runs"]):
            print(f"{r['case']:<10} {r['precision']:<5} {name:<7} {run['frames']:>6} {run['total_s']:>8.1f} "
                  f"{run['frames'] / run['total_s']:>15.3f} {run['frames'] / run['generator_s']:>14.3f} "
                  f"{r['peak_rss_mb']:>12.0f} {run['load'][0]:>5.1f}-{run['load'][1]:<5.1f}")


if __name__ == "__main__":
    main()
