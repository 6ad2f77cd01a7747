"""Cost per frame of each pipeline stage at 720p and 1080p on this machine's CPU.

    python bench/bench_stages.py

The face is the real photo's head scaled with the frame (about a third of the frame height).
Generator and restoration cost per face crop, so they do not grow with the frame size; the
compositing stages work on the face region only.
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, repeat: int = 5) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1000


def main() -> None:
    import cv2
    import skimage.data
    import torch

    from wav2lip_uhq.compositing import (
        BlendOptions,
        FeatherBlend,
        MaskBlend,
        Placement,
        extract_crop,
        hard_paste,
        paste_into,
    )
    from wav2lip_uhq.faces import create_detector
    from wav2lip_uhq.faces.landmarks import create_landmark_detector, smooth_landmarks
    from wav2lip_uhq.generators.wav2lip import generate_faces
    from wav2lip_uhq.models import Wav2Lip
    from wav2lip_uhq.models.optimize import fold_batchnorm
    from wav2lip_uhq.video import EncodeSettings, VideoWriter

    torch.set_grad_enabled(False)
    model = fold_batchnorm(Wav2Lip(96).eval()).to(memory_format=torch.channels_last)
    crops = np.random.default_rng(0).integers(0, 255, (32, 96, 96, 3), dtype=np.uint8)
    mels = np.random.default_rng(0).normal(size=(32, 80, 16)).astype(np.float32)
    gen_ms = timed(lambda: generate_faces(model, crops, mels, "cpu", torch.float32), 2) / 32
    head = skimage.data.astronaut()[:, :, ::-1]  # the whole photo: dlib's HOG wants the shoulders too
    det, lms = create_detector("dlib", max_size=None), create_landmark_detector("dlib")
    rows = []
    for height in (720, 1080):
        width = height * 16 // 9
        scale = height * 0.8 / head.shape[0]
        face = cv2.resize(head, None, fx=scale, fy=scale)
        frame = np.full((height, width, 3), 110, np.uint8)
        top, left = height // 10, width // 2 - face.shape[1] // 2
        frame[top : top + face.shape[0], left : left + face.shape[1]] = face
        rgb = np.ascontiguousarray(frame[:, :, ::-1])
        box = det.detect([rgb])[0][0, :4]
        pts = lms.landmarks([frame], box[None])[0]
        placement = Placement.from_box((int(box[0]), int(box[1]), int(box[2]), int(box[3]) + 10), 96, pts)
        generated = extract_crop(frame, placement)
        stages = {
            "detect (dlib, full frame)": timed(lambda: det.detect([rgb])),
            "landmarks (dlib)": timed(lambda: lms.landmarks([frame], box[None])),
            "landmark smoothing": timed(lambda: smooth_landmarks(np.repeat(pts[None], 7, 0))),
            "crop to 96 px": timed(lambda: extract_crop(frame, placement)),
            "generator (per frame, batch 32)": gen_ms,
            "paste: fast": timed(lambda: paste_into(frame.copy(), hard_paste, generated, placement)),
            "paste: feather": timed(lambda: paste_into(frame.copy(), FeatherBlend(), generated, placement)),
            "paste: improved (mask+colour)": timed(lambda: paste_into(frame.copy(), MaskBlend(), generated, placement)),
            "paste: improved + laplacian": timed(lambda: paste_into(frame.copy(), MaskBlend(BlendOptions(blend="laplacian")), generated, placement)),
            "paste: improved + poisson": timed(lambda: paste_into(frame.copy(), MaskBlend(BlendOptions(blend="poisson")), generated, placement)),
            "frame copy (reference)": timed(lambda: frame.copy()),
        }
        tmp = Path("/tmp/bench_stages.mp4")
        settings = EncodeSettings()
        with VideoWriter(tmp, width, height, Fraction(25), None, settings) as w:
            t = time.perf_counter()
            for _ in range(20):
                w.write(frame)
            enc = (time.perf_counter() - t) / 20 * 1000
        stages[f"encode H.264 crf{settings.crf} {settings.preset}"] = enc
        tmp.unlink(missing_ok=True)
        rows.append((f"{height}p", stages))
    names = list(rows[0][1])
    print("| stage | " + " | ".join(f"{r[0]} ms/frame" for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{r[1][n]:.2f}" for r in rows) + " |")


if __name__ == "__main__":
    main()
