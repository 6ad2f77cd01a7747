"""``python -m train eval``: LSE-D / LSE-C on any videos, PSNR / SSIM against ground truth.

LSE follows Wav2Lip's ``calculate_scores_LRS.py`` (whole 25 fps frames resized to 224, vshift
15) with ``--crop full``; ``--crop detect`` first crops the face with the engine's detector
(for arbitrary output videos where the face is a small part of the frame). FID needs the
pt_inception weights, which are not bundled; it is reported only when ``--fid-weights`` is
given and ``pytorch_fid`` is installed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .lse import load_lse_model, lse_scores
from .media import iter_video_frames, read_audio

log = logging.getLogger(__name__)


def _face_crops(frames: list[np.ndarray], detector_name: str, device: str) -> list[np.ndarray]:
    from wav2lip_uhq.faces import create_detector

    det = create_detector(detector_name, device=device)
    boxes = det.detect([np.ascontiguousarray(f[:, :, ::-1]) for f in frames])
    last, out = None, []
    for f, b in zip(frames, boxes):
        if len(b):
            last = b[int(np.argmax(b[:, 4]))][:4].astype(int)
        if last is None:
            continue
        x1, y1, x2, y2 = np.maximum(last, 0)
        out.append(f[y1:y2, x1:x2])
    return out


def psnr_ssim(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    n = min(len(a), len(b))
    ps = [peak_signal_noise_ratio(b[i], a[i], data_range=255) for i in range(n)]
    ss = [structural_similarity(b[i], a[i], channel_axis=2, data_range=255) for i in range(n)]
    return float(np.mean(ps)), float(np.mean(ss))


def run_eval(args) -> dict:
    from .distributed import pick_device

    device = pick_device(args.device)
    results: dict = {"videos": {}, "pairs": {}}
    model = load_lse_model(args.lse_model, device) if args.lse_model else None
    videos = [Path(v) for v in args.videos]
    pairs: list[tuple[Path, Path]] = []
    if args.test_list:
        for line in Path(args.test_list).read_text().splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) >= 2:
                pairs.append((Path(parts[0]), Path(parts[1])))
            elif args.generated_root and args.gt_root:
                pairs.append((Path(args.generated_root) / f"{parts[0]}.mp4", Path(args.gt_root) / f"{parts[0]}.mp4"))
        videos += [g for g, _ in pairs]
    for v in videos:
        if model is None:
            break
        frames = list(iter_video_frames(v, 25.0))
        if args.crop == "detect":
            frames = _face_crops(frames, args.detector, str(device))
        r = lse_scores(model, frames, read_audio(v), args.vshift, device=device)
        results["videos"][str(v)] = {"offset": r.offset, "lse_d": r.lse_d, "lse_c": r.lse_c}
        log.info("%s: LSE-D %.3f LSE-C %.3f offset %d", v, r.lse_d, r.lse_c, r.offset)
    for g, t in pairs:
        p, s = psnr_ssim(list(iter_video_frames(g, 25.0)), list(iter_video_frames(t, 25.0)))
        results["pairs"][str(g)] = {"psnr": p, "ssim": s}
    summary = {}
    if results["videos"]:
        summary["LSE-D"] = float(np.mean([r["lse_d"] for r in results["videos"].values()]))
        summary["LSE-C"] = float(np.mean([r["lse_c"] for r in results["videos"].values()]))
    if results["pairs"]:
        summary["PSNR"] = float(np.mean([r["psnr"] for r in results["pairs"].values()]))
        summary["SSIM"] = float(np.mean([r["ssim"] for r in results["pairs"].values()]))
    if args.fid_weights:
        log.warning("FID is not implemented in this version; --fid-weights ignored")
    results["summary"] = summary
    if args.out:
        import json

        Path(args.out).write_text(json.dumps(results, indent=1))
    return results
