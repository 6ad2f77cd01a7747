"""Sync correction: estimate each preprocessed clip's audio-video offset with an expert SyncNet.

Offset convention (ours): ``offset = k`` means video frame v best matches the audio of frame
``v + k`` (k > 0: the audio is late). For each shift k in [-max_shift, max_shift] the mean
cosine similarity between the face window at v and the audio window at v + k is computed
over the clip; the best k is the offset. ``drop`` removes clips with |offset| > tolerance from
the filelist; ``shift`` rewrites ``audio.wav`` so that frame v gets the audio of v + k
(drops k*640 samples at the start, or pads silence for k < 0; the length is kept) and keeps
the clip. Example: a clip whose audio is *delayed* by 2 frames (the sound comes 2 frames after
the mouth moves) is reported as ``+2``; shifting removes the first 2 frames of audio.

``shift`` never edits in place: the shifted wav is written to a temporary name and renamed
over ``audio.wav``; the first time a clip is shifted its original is kept as
``audio.orig.wav`` (never overwritten, so the data stays recoverable even after repeated
runs: ``mv audio.orig.wav audio.wav``). A packed cache built before the shift is stale:
rebuild it (``python -m train cache``).

The histogram of offsets is reported. Only our expert checkpoints are supported here; the
syncnet_v2 LSE model is used through ``python -m train eval`` (its offsets use
syncnet_python's convention, which is the negative of ours).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from wav2lip_uhq.audio import MEL_STEP
from wav2lip_uhq.files import write_atomic

from .data import JpegSource, _lower_half_stack, mel_start
from .preprocess import read_filelist
from .syncnet import load_expert

log = logging.getLogger(__name__)


def _embed(encoder, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([torch.nn.functional.normalize(encoder(x[i : i + batch]).flatten(1), dim=1)
                      for i in range(0, len(x), batch)])


@torch.no_grad()
def estimate_offset(expert, source: JpegSource, v: int, max_shift: int = 15, device="cpu") -> tuple[int, float]:
    """(offset in frames, confidence = best mean cosine - median mean cosine).

    Every face window and every audio window is embedded once; each shift k then averages
    cos(face(v), audio(v + k)) over the windows whose shifted audio exists (at least a quarter
    of them, else the shift is not scored)."""
    ids = source.frame_ids(v)
    mel = source.mel(v)
    n = int(ids.max()) + 1 if len(ids) else 0
    have = set(ids.tolist())
    starts = [f for f in range(n - 4) if all(f + k in have for k in range(5))]
    if len(starts) < 3:
        raise ValueError("too few complete 5-frame windows")
    face = torch.from_numpy(np.stack([_lower_half_stack(source.frames(v, range(f, f + 5))) for f in starts]))
    p = next(expert.parameters())
    face_emb = _embed(expert.face_encoder, face.to(p.device, p.dtype))
    audio_frames = [f for f in range(max(0, starts[0] - max_shift), starts[-1] + max_shift + 1)
                    if mel_start(f) + MEL_STEP <= mel.shape[0]]
    if not audio_frames:
        raise ValueError("audio shorter than one window")
    m = np.stack([mel[mel_start(f) : mel_start(f) + MEL_STEP].T for f in audio_frames])
    audio_emb = _embed(expert.audio_encoder, torch.from_numpy(m).unsqueeze(1).to(p.device, p.dtype))
    row = {f: i for i, f in enumerate(audio_frames)}
    scores = []
    for k in range(-max_shift, max_shift + 1):
        pairs = [(i, row[f + k]) for i, f in enumerate(starts) if f + k in row]
        if len(pairs) < max(3, len(starts) // 4):
            scores.append(-np.inf)
            continue
        fi, ai = (torch.tensor(t) for t in zip(*pairs))
        scores.append(float((face_emb[fi] * audio_emb[ai]).sum(1).mean()))
    scores_arr = np.array(scores)
    best = int(np.argmax(scores_arr))
    finite = scores_arr[np.isfinite(scores_arr)]
    return best - max_shift, float(scores_arr[best] - np.median(finite))


ORIGINAL_AUDIO = "audio.orig.wav"


def shift_audio(clip_dir: str | Path, offset: int, fps: float = 25.0) -> Path:
    """Make video frame v get the audio of v + ``offset`` (our convention), keeping the length.

    Atomic: written to a temp file and renamed over ``audio.wav``; the first shift keeps the
    untouched original as ``audio.orig.wav``. Returns the path of the original's copy."""
    import soundfile as sf

    from .media import write_wav

    clip_dir = Path(clip_dir)
    wav_path, orig = clip_dir / "audio.wav", clip_dir / ORIGINAL_AUDIO
    wav, sr = sf.read(str(wav_path), dtype="float32")
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    if not orig.exists():
        write_atomic(orig, wav_path.read_bytes())
    samples = round(offset * sr / fps)
    if samples > 0:
        shifted = np.concatenate([wav[samples:], np.zeros(min(samples, len(wav)), np.float32)])
    else:
        shifted = np.concatenate([np.zeros(-samples, np.float32), wav])[: len(wav)]
    write_wav(wav_path, shifted, sr)  # temp name + rename
    return orig


CHANCE = math.log(2)  # BCE of an expert that cannot tell in-sync from off-sync
NEAR_CHANCE = 0.6  # refuse experts whose recorded eval loss is at or above this (without --force)
LOW_CONFIDENCE = 0.02  # best minus median mean cosine: below this the expert barely prefers one shift
LIMIT_FRACTION = 0.1  # warn when more clips than this sit at +-max_shift


def recorded_eval_loss(path: str | Path) -> float | None:
    """The best eval loss our trainer recorded in an expert checkpoint (inf: never evaluated);
    None for checkpoints without a record (the released lipsync_expert.pth)."""
    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError):  # safetensors or another format: nothing recorded
        return None
    ts = ck.get("train_state") if isinstance(ck, dict) else None
    if not isinstance(ts, dict) or ts.get("kind") != "syncnet":
        return None
    return float(ts.get("best", math.inf))


def check_expert(path: str | Path, force: bool = False) -> float | None:
    """Refuse an expert whose own eval says it is near chance: its offsets would be noise."""
    loss = recorded_eval_loss(path)
    if loss is None:
        log.warning("%s records no eval loss: its offsets cannot be checked (watch the confidences)", path)
    elif loss >= NEAR_CHANCE:
        what = "was never evaluated" if math.isinf(loss) else f"has a recorded eval loss of {loss:.3f}"
        msg = (f"{path}: the expert {what} (chance = {CHANCE:.3f}); its offsets would be noise: train it "
               f"below {NEAR_CHANCE} (~0.25 on real data)")
        if not force:
            raise ValueError(msg + ", or pass --force")
        log.warning("%s; continuing (--force)", msg)
    return loss


def _warnings(rows: list[dict], max_shift: int) -> list[str]:
    """Signs that the expert, not the data, decided the offsets."""
    measured = [r for r in rows if "offset" in r]
    if not measured:
        return ["no clip could be measured"]
    out = []
    at_limit = sum(abs(r["offset"]) == max_shift for r in measured)
    if at_limit > max(1, LIMIT_FRACTION * len(measured)):
        out.append(f"{at_limit} of {len(measured)} clips sit at the search limit +-{max_shift}: the true offsets "
                   "lie beyond it (raise --max-shift) or the expert cannot tell")
    low = sum(r["confidence"] < LOW_CONFIDENCE for r in measured)
    if low > len(measured) / 2:
        out.append(f"{low} of {len(measured)} clips have a confidence below {LOW_CONFIDENCE}: the expert barely "
                   "prefers any shift; check it (eval loss, data domain) before trusting the offsets")
    return out


def run_sync_correction(preprocessed_root, filelist, syncnet, out, tolerance=1, max_shift=15, action="drop",
                        device="auto", report_path=None, force=False) -> dict:
    """Estimate every clip's offset; write the kept entries to ``out``; return (and optionally write)
    the report: ``histogram`` {offset: clips}, ``clips_detail`` per clip (offset, confidence, action,
    flags), ``warnings``. Refuses a near-chance expert unless ``force``."""
    from .distributed import pick_device

    if action not in ("drop", "shift"):
        raise ValueError(f"action must be drop or shift, got {action!r}")
    entries = read_filelist(filelist, "--filelist")
    expert_loss = check_expert(syncnet, force)
    dev = pick_device(device)
    expert = load_expert(syncnet, dev)
    source = JpegSource(preprocessed_root, entries, expert.img_size)
    kept, offsets, rows = [], Counter(), []
    for v, entry in enumerate(entries):
        try:
            off, conf = estimate_offset(expert, source, v, max_shift, dev)
        except (OSError, ValueError, RuntimeError) as exc:  # unreadable frames/audio, clip too short
            log.warning("%s: no offset (%s); dropped", entry, exc)
            rows.append({"entry": entry, "error": str(exc), "action": "dropped"})
            continue
        offsets[off] += 1
        flags = (["at search limit"] if abs(off) == max_shift else []) + (
            ["low confidence"] if conf < LOW_CONFIDENCE else [])
        row = {"entry": entry, "offset": off, "confidence": conf, "flags": flags}
        if abs(off) <= tolerance:
            kept.append(entry)
            row["action"] = "kept"
        elif action == "shift":
            shift_audio(Path(preprocessed_root) / entry, off)
            source._mels.pop(v, None)
            kept.append(entry)
            row["action"] = f"shifted by {off}"
        else:
            row["action"] = "dropped"
        rows.append(row)
        log.info("%s: offset %+d (confidence %.3f) -> %s", entry, off, conf, row["action"])
    write_atomic(out, "".join(e + "\n" for e in kept), parents=True)
    warnings = _warnings(rows, max_shift)
    for w in warnings:
        log.warning("%s", w)
    report = {"clips": len(entries), "kept": len(kept), "tolerance": tolerance, "action": action,
              "max_shift": max_shift, "expert_eval_loss": None if expert_loss is None or math.isinf(expert_loss) else expert_loss,
              "warnings": warnings,
              "histogram": {str(k): n for k, n in sorted(offsets.items())}, "clips_detail": rows}
    if report_path:
        write_atomic(report_path, json.dumps(report, indent=1), parents=True)
    return report
