"""Face-restoration cost: per face crop, batched, independent of the frame size.

    python bench/bench_restoration.py               # released-size GFPGAN (512 px), random weights
    python bench/bench_restoration.py --small       # 128 px narrow GFPGAN: quick, same code path
    python bench/bench_restoration.py --device cuda --batches 1 4 8 16

Two tables: time per face crop vs batch size (``restore_regions`` over N frames, one face each),
and the same face box in 720p and 1080p frames (the cost follows the crop, not the frame).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_gfpgan(path: Path, small: bool) -> None:
    import torch
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    kw = (
        {"out_size": 128, "num_style_feat": 64, "channel_multiplier": 1, "num_mlp": 2, "narrow": 0.25}
        if small
        else {}
    )
    torch.save({"params_ema": GFPGAN(**kw).state_dict()}, path)


def frame_with_face(height: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The astronaut photo (its face 100x120 px, scaled x2) in a frame of ``height`` rows, 16:9."""
    import cv2
    from skimage.data import astronaut

    face = cv2.resize(np.ascontiguousarray(astronaut()[..., ::-1]), (1024, 1024))
    frame = np.zeros((height, height * 16 // 9, 3), np.uint8)
    frame[: min(height, 1024), :1024] = face[: min(height, 1024)]
    return frame, (350, 120, 550, 360)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, cuDNN autotune)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--small", action="store_true", help="128 px narrow GFPGAN instead of the released 512 px size"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    import torch

    from wav2lip_uhq.compositing import feather_mask
    from wav2lip_uhq.restoration import FaceRestorer, restore_regions

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gfpgan.pth"
        build_gfpgan(path, args.small)
        restorer = FaceRestorer.from_file(path, device=args.device, batch_size=max(args.batches))

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print(
        f"\nGFPGAN {restorer.size} px (random weights), {args.device}, {restorer.dtype}, "
        f"torch threads {torch.get_num_threads()} of {os.cpu_count()} cores\n"
    )

    frame, box = frame_with_face(720)
    mask = feather_mask(box[3] - box[1], box[2] - box[0])

    def run(frames, n):
        restore_regions(frames, [box] * n, [mask] * n, restorer)  # in place: same cost every time
        sync()

    print("| faces per call (batch) | seconds per call | ms per face crop |")
    print("|---:|---:|---:|")
    for n in args.batches:
        restorer.batch_size = n
        frames = [frame.copy() for _ in range(n)]
        sec = timed(lambda frames=frames, n=n: run(frames, n), args.repeats)
        print(f"| {n} | {sec:.3f} | {1000 * sec / n:.1f} |")

    n = max(args.batches)
    restorer.batch_size = n
    print(f"\nsame {box[2] - box[0]}x{box[3] - box[1]} face box, {n} frames per call (heights interleaved)\n")

    class NoNetwork:  # crop, pad, paste and blend only
        def restore(self, faces):
            return faces

    cases = {h: [frame_with_face(h)[0] for _ in range(n)] for h in (720, 1080)}
    best = {(h, k): float("inf") for h in cases for k in ("net", "none")}
    for h, frames in cases.items():
        run(frames, n)  # warm-up
    for _ in range(args.repeats):
        for h, frames in cases.items():
            for kind, model in (("net", restorer), ("none", NoNetwork())):
                t = time.perf_counter()
                restore_regions(frames, [box] * n, [mask] * n, model)  # type: ignore[arg-type]
                sync()
                best[h, kind] = min(best[h, kind], time.perf_counter() - t)
    print("| frame | ms per face crop | of which crop + paste (no network) |")
    print("|---|---:|---:|")
    for h, frames in cases.items():
        w = frames[0].shape[1]
        print(f"| {w}x{h} | {1000 * best[h, 'net'] / n:.1f} | {1000 * best[h, 'none'] / n:.2f} |")


if __name__ == "__main__":
    main()
