"""Engine benchmark: generator-stage and end-to-end frames per second, and peak memory.

    python bench/bench_engine.py                 # 10 s 720p, ours vs the upstream-style baseline
    python bench/bench_engine.py --memory        # + peak memory of 20 s and 60 s 1080p runs

Each case runs in a fresh subprocess so that its peak RSS is its own. Targets (DEVELOPERS.md):
end-to-end >= 2x the upstream algorithm on the same machine and checkpoint; peak memory flat
in video length (60 s 1080p under 2 GB).
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
sys.path.insert(0, str(ROOT / "bench"))
SPEECH = ROOT.parent / "shared" / "reference" / "speech_16k.wav"


def make_inputs(work: Path, seconds: float, height: int) -> tuple[Path, Path, Path, tuple[int, int, int, int]]:
    """A synthetic talking-head clip (the real photo's head, moving), speech of the same length,
    and a rule-filled checkpoint in the released layout."""
    import cv2
    import skimage.data
    import soundfile as sf
    import torch

    from wav2lip_uhq.models import Wav2Lip
    from wav2lip_uhq.models.fill import fill_rule_state_dict
    from wav2lip_uhq.video import EncodeSettings, VideoWriter

    width = height * 16 // 9
    ckpt = work / "wav2lip_gan.pth"
    if not ckpt.exists():
        sd = fill_rule_state_dict(Wav2Lip(96))
        torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, ckpt)
    wav, sr = sf.read(SPEECH, dtype="float32")
    reps = int(np.ceil(seconds * sr / len(wav)))
    audio = work / f"speech_{seconds:g}s.wav"
    sf.write(audio, np.tile(wav, reps)[: int(seconds * sr)], sr)
    head = cv2.resize(skimage.data.astronaut()[:, :, ::-1][20:260, 120:330], None, fx=height / 720, fy=height / 720)
    video = work / f"face_{height}p_{seconds:g}s.mp4"
    box_h, box_w = head.shape[:2]
    top, left = height // 4, width // 2 - box_w // 2
    if not video.exists():
        rng = np.random.default_rng(0)
        background = rng.integers(90, 140, size=(height, width, 3), dtype=np.uint8)
        with VideoWriter(video, width, height, Fraction(25), None, EncodeSettings(crf=20, preset="veryfast")) as w:
            for _ in range(int(seconds * 25)):
                frame = background.copy()
                frame[top : top + box_h, left : left + box_w] = head
                w.write(frame)
    box = (top + int(0.3 * box_h), top + box_h, left + int(0.1 * box_w), left + int(0.9 * box_w))
    return video, audio, ckpt, box


def worker(kind: str, video: str, audio: str, ckpt: str, box: list[int], out: str) -> dict:
    if kind.startswith("ours"):  # the process set-up the CLI does (before torch loads)
        from wav2lip_uhq.cli import configure_process

        configure_process()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    gen = None
    if kind == "upstream":
        from upstream_baseline import run_upstream_style

        frames = run_upstream_style(Path(video), Path(audio), Path(ckpt), tuple(box), Path(out))
    elif kind.startswith("generator"):  # the model stage alone, batch 32, 96 px crops
        from wav2lip_uhq.pipeline import LipSyncPipeline

        precision = kind.split("-")[1]
        generator = LipSyncPipeline("cpu").load_generator(Path(ckpt), "cpu", precision)
        crops = list(np.random.default_rng(0).integers(0, 255, (32, 96, 96, 3), dtype=np.uint8))
        mels = np.random.default_rng(1).normal(size=(32, 80, 16)).astype(np.float32)
        generator.generate(crops, mels)
        t0 = time.perf_counter()
        for _ in range(8):
            generator.generate(crops, mels)
        frames = 8 * 32
        gen = frames / (time.perf_counter() - t0)
    else:
        from wav2lip_uhq.config import FaceOptions, RunConfig
        from wav2lip_uhq.pipeline import run

        mode = "fast" if kind == "ours-fast" else "improved"
        result = run(RunConfig(face=video, audio=audio, checkpoint=ckpt, out=out, mode=mode,
                               faces=FaceOptions(box=tuple(box)), device="cpu", cache_dir=Path(out).parent / "cache"))
        frames = result.frames
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    return {"kind": kind, "frames": frames, "seconds": seconds, "fps": gen or frames / seconds, "peak_mib": peak}


def spawn(kind: str, video: Path, audio: Path, ckpt: Path, box, out: Path) -> dict:
    args = json.dumps([kind, str(video), str(audio), str(ckpt), list(box), str(out)])
    res = subprocess.run([sys.executable, __file__, "--worker", args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--memory", action="store_true", help="also measure 20 s and 60 s 1080p runs")
    p.add_argument("--no-upstream", action="store_true")
    p.add_argument("--work", type=Path)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(*json.loads(args.worker))))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="w2l-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    video, audio, ckpt, box = make_inputs(work, args.seconds, args.height)
    label = f"{args.seconds:g}s {args.height}p"
    rows.append((label, spawn("generator-fp32", video, audio, ckpt, box, work / "g.mp4")))
    from wav2lip_uhq.pipeline import cpu_has_native_bf16

    if cpu_has_native_bf16():
        rows.append((label, spawn("generator-bf16", video, audio, ckpt, box, work / "g.mp4")))
    rows.append((label, spawn("ours-improved", video, audio, ckpt, box, work / "ours.mp4")))
    rows.append((label, spawn("ours-fast", video, audio, ckpt, box, work / "ours_fast.mp4")))
    if not args.no_upstream:
        rows.append((label, spawn("upstream", video, audio, ckpt, box, work / "up.mp4")))
    if args.memory:
        for secs in (20, 60):
            v, a, c, b = make_inputs(work, secs, 1080)
            rows.append((f"{secs}s 1080p", spawn("ours-improved", v, a, c, b, work / f"m{secs}.mp4")))
    print(f"\nCPU: {os.cpu_count()} cores, torch threads = cores; fixed box, wav2lip_96 (rule-filled weights)\n")
    print("| input | run | frames | seconds | frames/s | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['kind']} | {r['frames']} | {r['seconds']:.1f} | {r['fps']:.1f} | {r['peak_mib']:.0f} |")
    up = next((r for _, r in rows if r["kind"] == "upstream"), None)
    for kind in ("ours-fast", "ours-improved"):
        ours = next((r for _, r in rows if r["kind"] == kind), None)
        if ours and up:
            print(f"end-to-end speed-up, {kind} vs upstream algorithm: {ours['fps'] / up['fps']:.2f}x")


if __name__ == "__main__":
    main()
