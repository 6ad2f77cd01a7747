"""UHQ refinement cost: seconds per frame vs crop (working) size, steps and batch, on the tiny
random SD components of the tests (CPU; the cost structure, not SD 1.5's absolute numbers), and
the fraction of frame pixels diffused for 720p / 1080p talking heads.

    python bench/bench_refine.py [--sizes 64 128] [--steps 4 8] [--batches 1 4] [--frames 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def pixel_fractions() -> list[tuple[str, float, int, float]]:
    """(frame, face height fraction, crop side px, diffused fraction) with the real landmark mask
    of the astronaut (dlib), scaled to a head filling 30 % / 50 % of the frame height."""
    import skimage.data

    from wav2lip_uhq.compositing import MaskBlend, Placement
    from wav2lip_uhq.faces import create_detector
    from wav2lip_uhq.faces.landmarks import create_landmark_detector
    from wav2lip_uhq.refine.base import mouth_box

    img = np.ascontiguousarray(skimage.data.astronaut())
    box = create_detector("dlib").detect([img])[0][0][:4]
    pts = create_landmark_detector("dlib").landmarks([img[:, :, ::-1]], np.array([box], np.float32))[0]
    face_h = pts[:, 1].max() - pts[:, 1].min()
    rows = []
    for name, (w, h) in (("720p", (1280, 720)), ("1080p", (1920, 1080))):
        for frac in (0.3, 0.5):
            s = frac * h / face_h
            p = pts * s + (w / 2 - pts[:, 0].mean() * s, h / 2 - pts[:, 1].mean() * s)
            x1, y1 = p.min(0) - 0.1 * s * face_h
            x2, y2 = p.max(0) + 0.1 * s * face_h
            pl = Placement.from_box((int(x1), int(y1), int(x2), int(y2)), 96, p)
            roi, _, alpha = MaskBlend().alpha((h, w), 96, pl)
            b = mouth_box(alpha, roi, 512, 0.15)
            rows.append((name, frac, b.side, b.side ** 2 / (w * h)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    import test_refine as T
    import torch

    from wav2lip_uhq.refine import ControlSpec, RefineBatch, RefineOptions
    from wav2lip_uhq.refine.diffusers_backend import DiffusersRefiner

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    components, cn = T.build_tiny(Path(tempfile.mkdtemp()))
    rng = np.random.default_rng(0)
    print("| crop | steps (run at denoise 0.5) | batch | s/frame |")
    print("|---|---|---|---|")
    for size in args.sizes:
        for steps in args.steps:
            for batch in args.batches:
                o = RefineOptions(size=size, steps=steps, denoise=0.5, cfg=2.0, sampler="ddim", batch_size=batch,
                                  controlnets=(ControlSpec("tiny", "canny"),), prompt="a mouth", negative_prompt="")
                r = DiffusersRefiner(dict(components), [cn], o)
                ims = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(batch)]
                masks = [np.ones((size, size), np.float32)] * batch
                ctl = [[np.zeros((size, size, 3), np.uint8)] * batch]
                r.refine(RefineBatch(ims, masks, ctl, [1] * batch))  # warm-up
                t = time.perf_counter()
                calls = max(1, args.frames // batch)
                for _ in range(calls):
                    r.refine(RefineBatch(ims, masks, ctl, [1] * batch))
                dt = (time.perf_counter() - t) / (calls * batch)
                print(f"| {size} | {steps} ({int(steps * 0.5)}) | {batch} | {dt:.3f} |")
    print()
    print("| frame | head height / frame height | crop side (px) | diffused fraction of the frame |")
    print("|---|---|---|---|")
    for name, frac, side, f in pixel_fractions():
        print(f"| {name} | {frac:.0%} | {side} | {f:.1%} |")


if __name__ == "__main__":
    main()
