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


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float | None:
    """PSNR (dB) of the mean squared error over all frames of a pair: frames that happen to be identical
    add an error of 0 instead of an infinite (or capped 100 dB) PSNR; None for identical clips."""
    mse = float(np.mean([np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2) for x, y in zip(a, b)]))
    return None if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def mean_ssim(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    from skimage.metrics import structural_similarity

    side = min(a[0].shape[:2])  # skimage needs an odd window no larger than the image
    win = min(7, side if side % 2 else side - 1)
    return float(np.mean([structural_similarity(y, x, channel_axis=2, data_range=255, win_size=win)
                          for x, y in zip(a, b)]))


def mouth_boxes(gt: list[np.ndarray], face_boxes: list | None) -> list[tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) of the region Wav2Lip regenerates, per frame: the lower half of the face box
    (the whole frame when the clips are face crops, ``face_boxes`` None)."""
    out = []
    for i, f in enumerate(gt):
        if face_boxes is None:
            x1, y1, x2, y2 = 0, 0, f.shape[1], f.shape[0]
        else:
            x1, y1, x2, y2 = face_boxes[i]
        out.append((y1 + (y2 - y1) // 2, y2, x1, x2))
    return out


def pair_scores(gen: list[np.ndarray], gt: list[np.ndarray], face_boxes: list | None = None) -> dict:
    """PSNR / SSIM over the whole frames and over the mouth region (whole-frame figures barely move when
    only the mouth changes)."""
    n = min(len(gen), len(gt))
    if n == 0:
        raise ValueError("no frames to compare")
    gen, gt = gen[:n], gt[:n]
    if gen[0].shape != gt[0].shape:
        raise ValueError(f"frame sizes differ: {gen[0].shape} vs {gt[0].shape}")
    crops = [(a[y1:y2, x1:x2], b[y1:y2, x1:x2]) for a, b, (y1, y2, x1, x2)
             in zip(gen, gt, mouth_boxes(gt, face_boxes))]
    mg, mt = [c[0] for c in crops], [c[1] for c in crops]
    return {"frames": n, "psnr": psnr(gen, gt), "ssim": mean_ssim(gen, gt),
            "mouth_psnr": psnr(mg, mt), "mouth_ssim": mean_ssim(mg, mt)}


def psnr_ssim(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float | None, float]:
    """Whole-frame PSNR (None for identical clips) and mean SSIM of two clips."""
    r = pair_scores(a, b)
    return r["psnr"], r["ssim"]


def _fixed_or_detected_boxes(frames: list[np.ndarray], args, device: str) -> list | None:
    """Face boxes (x1, y1, x2, y2) per frame: ``--face-box``, or detected with ``--crop detect``, else None."""
    if getattr(args, "face_box", None):
        top, bottom, left, right = args.face_box
        return [(left, top, right, bottom)] * len(frames)
    if args.crop != "detect":
        return None
    from wav2lip_uhq.faces import create_detector

    det = create_detector(args.detector, device=device)
    boxes, last = [], None
    for b in det.detect([np.ascontiguousarray(f[:, :, ::-1]) for f in frames]):
        if len(b):
            last = tuple(int(max(0, v)) for v in b[int(np.argmax(b[:, 4]))][:4])
        boxes.append(last)
    if last is None:
        raise ValueError("no face found in the ground-truth frames (--crop detect)")
    first = next(b for b in boxes if b is not None)
    return [b if b is not None else first for b in boxes]


class _ClipSource:
    """One in-memory clip as a training source (faces at the expert's size + mel), for :func:`estimate_offset`."""

    def __init__(self, faces: list[np.ndarray], wav: np.ndarray, img_size: int) -> None:
        import cv2

        from .data import melspectrogram

        self.entries = ["clip"]
        self.img_size = img_size
        self._faces = np.stack([cv2.resize(f, (img_size, img_size)) for f in faces])
        self._mel = np.ascontiguousarray(melspectrogram(wav).T)

    def frame_ids(self, v: int) -> np.ndarray:
        return np.arange(len(self._faces))

    def frames(self, v: int, ids) -> np.ndarray:
        return self._faces[list(ids)]

    def mel(self, v: int) -> np.ndarray:
        return self._mel


def expert_scores(expert, faces: list[np.ndarray], wav: np.ndarray, vshift: int, device) -> dict:
    """Our expert's view of a clip: the offset it finds (our sign convention), its confidence, and the
    mean sync loss BCE(cos, 1) of the in-sync windows (what the generator was trained to lower)."""
    import torch

    from .data import _lower_half_stack, mel_start
    from .synccorrect import estimate_offset

    src = _ClipSource(faces, wav, expert.img_size)
    offset, conf = estimate_offset(expert, src, 0, vshift, device)
    starts = [f for f in range(len(faces) - 4) if mel_start(f) + 16 <= src._mel.shape[0]]
    p = next(expert.parameters())
    x = torch.from_numpy(np.stack([_lower_half_stack(src.frames(0, range(f, f + 5))) for f in starts]))
    m = torch.from_numpy(np.stack([src._mel[mel_start(f) : mel_start(f) + 16].T for f in starts])).unsqueeze(1)
    with torch.no_grad():
        a, v = expert(m.to(p.device, p.dtype), x.to(p.device, p.dtype))
        loss = expert.sync_loss(a.float(), v.float(), torch.ones(len(a), 1, device=a.device))
    return {"expert_offset": offset, "expert_confidence": conf, "expert_sync_loss": float(loss)}


def _read_pairs(args) -> list[tuple[Path, Path]]:
    pairs = []
    if not Path(args.test_list).is_file():
        raise ValueError(f"{args.test_list}: no such file (--test-list)")
    for line in Path(args.test_list).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) >= 2:
            pairs.append((Path(parts[0]), Path(parts[1])))
        elif args.generated_root and args.gt_root:
            pairs.append((Path(args.generated_root) / f"{parts[0]}.mp4", Path(args.gt_root) / f"{parts[0]}.mp4"))
        else:
            raise ValueError(f"{args.test_list}: line {line!r} names one video; give 'generated gt' pairs or "
                             "--generated-root and --gt-root")
    for path in {p for pair in pairs for p in pair}:
        if not path.is_file():
            raise ValueError(f"{path}: no such video (in {args.test_list})")
    return pairs


def _check_inputs(args) -> None:
    if not args.videos and not args.test_list:
        raise ValueError("nothing to evaluate: give --videos (sync scores) and/or --test-list (pairs)")
    for name in ("lse_model", "syncnet"):
        path = getattr(args, name, None)
        if path and not Path(path).is_file():
            raise ValueError(f"{path}: no such file (--{name.replace('_', '-')})")
    if args.videos and not (args.lse_model or getattr(args, "syncnet", None)):
        raise ValueError("scoring --videos needs a sync model: --lse-model syncnet_v2.model (syncnet_python's, "
                         "for LSE-D/LSE-C) or --syncnet EXPERT.pth (one from `python -m train syncnet`)")
    for v in args.videos:
        if not Path(v).is_file():
            raise ValueError(f"{v}: no such video (--videos)")


def _mean(rows, key) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def run_eval(args) -> dict:
    from .distributed import pick_device

    _check_inputs(args)
    device = pick_device(args.device)
    fid_model = None
    if args.fid or args.fid_weights:
        from .fid import load_inception

        fid_model = load_inception(args.fid_weights, device)  # FIDWeightsMissing: clear message, before any work
        if not args.test_list:
            raise ValueError("FID compares generated with ground-truth frames: give --test-list pairs")
    results: dict = {"videos": {}, "pairs": {}}
    model = load_lse_model(args.lse_model, device) if args.lse_model else None
    expert = None
    if getattr(args, "syncnet", None):
        from .syncnet import load_expert

        expert = load_expert(args.syncnet, device)
    videos = [Path(v) for v in args.videos]
    pairs = _read_pairs(args) if args.test_list else []
    videos += [g for g, _ in pairs]
    for v in videos if (model is not None or expert is not None) else []:
        frames = list(iter_video_frames(v, 25.0))
        if getattr(args, "face_box", None):
            top, bottom, left, right = args.face_box
            frames = [f[top:bottom, left:right] for f in frames]
        elif args.crop == "detect":
            frames = _face_crops(frames, args.detector, str(device))
        wav = load_audio(v)
        row = {}
        if model is not None:
            r = lse_scores(model, frames, wav, args.vshift, device=device)
            row.update(offset=r.offset, lse_d=r.lse_d, lse_c=r.lse_c)
        if expert is not None:
            row.update(expert_scores(expert, frames, wav, args.vshift, device))
        results["videos"][str(v)] = row
        log.info("%s: %s", v, "  ".join(f"{k} {x:.3f}" if isinstance(x, float) else f"{k} {x}" for k, x in row.items()))
    gen_feats, gt_feats = [], []
    for g, t in pairs:
        gen, gt = list(iter_video_frames(g, 25.0)), list(iter_video_frames(t, 25.0))
        results["pairs"][str(g)] = pair_scores(gen, gt, _fixed_or_detected_boxes(gt, args, str(device)))
        if fid_model is not None:
            from .fid import inception_features

            gen_feats.append(inception_features(fid_model, gen, device=device))
            gt_feats.append(inception_features(fid_model, gt, device=device))
    summary = {}
    rows = list(results["videos"].values())
    for key, name in (("lse_d", "LSE-D"), ("lse_c", "LSE-C"), ("expert_sync_loss", "expert_sync_loss"),
                      ("expert_confidence", "expert_confidence")):
        if _mean(rows, key) is not None:
            summary[name] = _mean(rows, key)
    prs = list(results["pairs"].values())
    if prs:
        for key in ("psnr", "ssim", "mouth_psnr", "mouth_ssim"):
            summary[key.upper().replace("MOUTH_", "mouth_")] = _mean(prs, key)
        summary["identical_pairs"] = sum(r["psnr"] is None for r in prs)  # not averaged into PSNR
    if gen_feats:
        from .fid import frechet_distance

        summary["FID"] = frechet_distance(np.concatenate(gen_feats), np.concatenate(gt_feats))
    results["summary"] = summary
    if args.out:
        import json

        from wav2lip_uhq.files import write_atomic

        write_atomic(args.out, json.dumps(results, indent=1), parents=True)
    return results
