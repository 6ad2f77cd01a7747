"""x264 preset choice: CPU time, file size and PSNR at the same CRF on a hard (grainy, moving) clip.

    python bench/bench_encode.py [--frames 120] [--crf 16]

Why: on a 2-core machine the encoder shares the cores with the generator, so its CPU time is
end-to-end time. The default preset must not cost quality: compare PSNR at equal CRF.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def clip(n: int, width: int = 1280, height: int = 720) -> list[np.ndarray]:
    """The real photo at 720p with film-like grain, panning: grain is what costs bits."""
    import cv2
    import skimage.data

    rng = np.random.default_rng(0)
    base = cv2.resize(skimage.data.astronaut()[:, :, ::-1], (width, height)).astype(np.int16)
    return [
        np.roll(np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8), (2 * i) % 40, axis=1)
        for i in range(n)
    ]


def main() -> None:
    from wav2lip_uhq.video import EncodeSettings, VideoWriter, iter_frames

    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--crf", type=int, default=16)
    args = p.parse_args()
    frames = clip(args.frames)
    work = Path(tempfile.mkdtemp(prefix="w2l-encode-"))
    print(f"\n{args.frames} frames 1280x720, CRF {args.crf}\n")
    print("| preset | CPU s | MB | PSNR dB |")
    print("|---|---:|---:|---:|")
    for preset in ("medium", "faster", "veryfast", "ultrafast"):
        out = work / f"{preset}.mp4"
        t = time.process_time()  # all threads of this process: the encoder's own threads included
        with VideoWriter(out, 1280, 720, Fraction(25), None, EncodeSettings(crf=args.crf, preset=preset)) as w:
            for f in frames:
                w.write(f)
        cpu = time.process_time() - t
        decoded = list(iter_frames(out))
        mse = np.mean([np.mean((a.astype(np.float64) - b) ** 2) for a, b in zip(frames, decoded)])
        print(f"| {preset} | {cpu:.2f} | {out.stat().st_size / 1e6:.2f} | {10 * np.log10(255**2 / mse):.2f} |")


if __name__ == "__main__":
    main()
