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


def run_sync_correction(preprocessed_root, filelist, syncnet, out, tolerance=1, max_shift=15, action="drop",
                        device="auto", report_path=None) -> dict:
    """Estimate every clip's offset; write the kept entries to ``out``; return (and optionally write)
    the report: ``histogram`` {offset: clips}, ``clips_detail`` per clip (offset, confidence, action)."""
    from .distributed import pick_device

    if action not in ("drop", "shift"):
        raise ValueError(f"action must be drop or shift, got {action!r}")
    dev = pick_device(device)
    expert = load_expert(syncnet, dev)
    entries = read_filelist(filelist)
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
        row = {"entry": entry, "offset": off, "confidence": conf}
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
    report = {"clips": len(entries), "kept": len(kept), "tolerance": tolerance, "action": action,
              "histogram": {str(k): n for k, n in sorted(offsets.items())}, "clips_detail": rows}
    if report_path:
        write_atomic(report_path, json.dumps(report, indent=1), parents=True)
    return report
