"""Sync correction: estimate each preprocessed clip's audio-video offset with an expert SyncNet.

Offset convention (ours): ``offset = k`` means video frame v best matches the audio of frame
``v + k`` (k > 0: the audio is late). For each shift k in [-max_shift, max_shift] the mean
cosine similarity between the face window at v and the audio window at v + k is computed
over the clip; the best k is the offset. ``drop`` removes clips with |offset| > tolerance from
the filelist; ``shift`` rewrites ``audio.wav`` so that frame v gets the audio of v + k
(drops k*640 samples at the start, or pads silence for k < 0) and keeps the clip.
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

from .data import JpegSource, _lower_half_stack, mel_start
from .preprocess import read_filelist
from .syncnet import load_expert

log = logging.getLogger(__name__)


@torch.no_grad()
def estimate_offset(expert, source: JpegSource, v: int, max_shift: int = 15, device="cpu") -> tuple[int, float]:
    """(offset in frames, confidence = best mean cosine - median mean cosine)."""
    ids = source.frame_ids(v)
    mel = source.mel(v)
    n = int(ids.max()) + 1 if len(ids) else 0
    have = set(ids.tolist())
    starts = [f for f in range(n - 4) if all(f + k in have for k in range(5))]
    if len(starts) < 3:
        raise ValueError("too few complete 5-frame windows")
    frames = {f: source.frames(v, range(f, f + 5)) for f in starts}
    face = torch.from_numpy(np.stack([_lower_half_stack(frames[f]) for f in starts])).to(device)
    n_mel = (mel.shape[0] - MEL_STEP) // (80 / 25) + 1
    scores = []
    for k in range(-max_shift, max_shift + 1):
        valid = [i for i, f in enumerate(starts) if 0 <= f + k and mel_start(f + k) + MEL_STEP <= mel.shape[0]]
        if len(valid) < max(3, len(starts) // 4):
            scores.append(-np.inf)
            continue
        m = np.stack([mel[mel_start(starts[i] + k) : mel_start(starts[i] + k) + MEL_STEP].T for i in valid])
        a, f_emb = expert(torch.from_numpy(m).unsqueeze(1).to(device), face[valid])
        scores.append(float(torch.nn.functional.cosine_similarity(a, f_emb).mean()))
    del n_mel
    scores_arr = np.array(scores)
    best = int(np.argmax(scores_arr))
    finite = scores_arr[np.isfinite(scores_arr)]
    return best - max_shift, float(scores_arr[best] - np.median(finite))


def run_sync_correction(preprocessed_root, filelist, syncnet, out, tolerance=1, max_shift=15, action="drop",
                        device="auto", report_path=None) -> dict:
    from .distributed import pick_device
    from .media import write_wav

    dev = pick_device(device)
    expert = load_expert(syncnet, dev)
    entries = read_filelist(filelist)
    source = JpegSource(preprocessed_root, entries, expert.img_size)
    kept, offsets, rows = [], Counter(), []
    for v, entry in enumerate(entries):
        try:
            off, conf = estimate_offset(expert, source, v, max_shift, dev)
        except Exception as exc:
            rows.append({"entry": entry, "error": str(exc)})
            continue
        offsets[off] += 1
        rows.append({"entry": entry, "offset": off, "confidence": conf})
        if abs(off) <= tolerance:
            kept.append(entry)
        elif action == "shift":
            import soundfile as sf

            wav_path = Path(preprocessed_root) / entry / "audio.wav"
            wav, sr = sf.read(str(wav_path), dtype="float32")
            samples = off * sr // 25
            wav = wav[samples:] if samples > 0 else np.concatenate([np.zeros(-samples, np.float32), wav])
            write_wav(wav_path, wav, sr)
            kept.append(entry)
    Path(out).write_text("".join(e + "\n" for e in kept))
    report = {"clips": len(entries), "kept": len(kept), "histogram": dict(sorted(offsets.items())), "clips_detail": rows}
    if report_path:
        Path(report_path).write_text(json.dumps(report, indent=1))
    return report
