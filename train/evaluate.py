"""``python -m train eval``: LSE-D / LSE-C on any videos, PSNR / SSIM against ground truth.

LSE follows Wav2Lip's ``calculate_scores_LRS.py`` (whole 25 fps frames resized to 224, vshift
15) with ``--crop full``; ``--crop detect`` first crops the face with the engine's detector
(for arbitrary output videos where the face is a small part of the frame).

PSNR / SSIM: per frame between a generated video and its ground truth, averaged (identical
frames give PSNR = ``PSNR_CAP`` 100 dB instead of infinity, so the JSON stays valid).
FID (``--fid``): between all generated frames and all ground-truth frames of the pairs, with
an Inception-v3 loaded from ``--fid-weights`` (see :mod:`train.fid`; nothing is downloaded).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from wav2lip_uhq.audio import load_audio

from .lse import load_lse_model, lse_scores
from .media import iter_video_frames

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


PSNR_CAP = 100.0


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * np.log10(255.0**2 / mse))


def psnr_ssim(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    """Mean PSNR (dB, capped at 100) and SSIM over the common frames of two clips."""
    from skimage.metrics import structural_similarity

    n = min(len(a), len(b))
    if n == 0:
        raise ValueError("no frames to compare")
    if a[0].shape != b[0].shape:
        raise ValueError(f"frame sizes differ: {a[0].shape} vs {b[0].shape}")
    ps = [_psnr(a[i], b[i]) for i in range(n)]
    ss = [structural_similarity(b[i], a[i], channel_axis=2, data_range=255) for i in range(n)]
    return float(np.mean(ps)), float(np.mean(ss))


def run_eval(args) -> dict:
    from .distributed import pick_device

    device = pick_device(args.device)
    fid_model = None
    if args.fid or args.fid_weights:
        from .fid import load_inception

        fid_model = load_inception(args.fid_weights, device)  # FIDWeightsMissing: clear message, before any work
        if not args.test_list:
            raise ValueError("FID compares generated with ground-truth frames: give --test-list pairs")
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
        r = lse_scores(model, frames, load_audio(v), args.vshift, device=device)
        results["videos"][str(v)] = {"offset": r.offset, "lse_d": r.lse_d, "lse_c": r.lse_c}
        log.info("%s: LSE-D %.3f LSE-C %.3f offset %d", v, r.lse_d, r.lse_c, r.offset)
    gen_feats, gt_feats = [], []
    for g, t in pairs:
        gen, gt = list(iter_video_frames(g, 25.0)), list(iter_video_frames(t, 25.0))
        p, s = psnr_ssim(gen, gt)
        results["pairs"][str(g)] = {"psnr": p, "ssim": s}
        if fid_model is not None:
            from .fid import inception_features

            gen_feats.append(inception_features(fid_model, gen, device=device))
            gt_feats.append(inception_features(fid_model, gt, device=device))
    summary = {}
    if results["videos"]:
        summary["LSE-D"] = float(np.mean([r["lse_d"] for r in results["videos"].values()]))
        summary["LSE-C"] = float(np.mean([r["lse_c"] for r in results["videos"].values()]))
    if results["pairs"]:
        summary["PSNR"] = float(np.mean([r["psnr"] for r in results["pairs"].values()]))
        summary["SSIM"] = float(np.mean([r["ssim"] for r in results["pairs"].values()]))
    if gen_feats:
        from .fid import frechet_distance

        summary["FID"] = frechet_distance(np.concatenate(gen_feats), np.concatenate(gt_feats))
    results["summary"] = summary
    if args.out:
        import json
        import os

        out = Path(args.out)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, out)
    return results
