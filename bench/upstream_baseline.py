"""Baseline: upstream Wav2Lip inference.py's algorithm with a fixed box, for speed/memory comparison.

Written from the documented behaviour (shared/docs/wav2lip-upstream-facts.md section 6), not
copied: read every frame into memory, batch 128, hard paste, cv2.VideoWriter DIVX to a temp
AVI, then an FFmpeg mux with ``-q:v 1``. It uses our mel code, so only the engine differs.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from wav2lip_uhq.audio import load_audio, mel_windows, melspectrogram
from wav2lip_uhq.models import load_model


def run_upstream_style(face: Path, audio: Path, checkpoint: Path, box, outfile: Path, batch_size: int = 128) -> int:
    import imageio_ffmpeg

    cap = cv2.VideoCapture(str(face))
    fps = cap.get(cv2.CAP_PROP_FPS)
    full_frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        full_frames.append(frame)
    mel = melspectrogram(load_audio(audio))
    chunks = mel_windows(mel, fps)
    full_frames = full_frames[: len(chunks)]
    y1, y2, x1, x2 = box
    model = load_model(checkpoint, "cpu", kind="wav2lip")
    h, w = full_frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        avi = Path(tmp) / "result.avi"
        out = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"DIVX"), fps, (w, h))
        for start in range(0, len(chunks), batch_size):
            idx = range(start, min(start + batch_size, len(chunks)))
            frames = [full_frames[i % len(full_frames)].copy() for i in idx]
            faces = np.asarray([cv2.resize(f[y1:y2, x1:x2], (96, 96)) for f in frames])
            masked = faces.copy()
            masked[:, 48:] = 0
            img = np.concatenate((masked, faces), axis=3) / 255.0
            mels = np.reshape(np.asarray([chunks[i] for i in idx]), (len(idx), 80, 16, 1))
            with torch.no_grad():
                pred = model(
                    torch.FloatTensor(np.transpose(mels, (0, 3, 1, 2))),
                    torch.FloatTensor(np.transpose(img, (0, 3, 1, 2))),
                )
            pred = pred.numpy().transpose(0, 2, 3, 1) * 255.0
            for p, f in zip(pred, frames):
                f[y1:y2, x1:x2] = cv2.resize(p.astype(np.uint8), (x2 - x1, y2 - y1))
                out.write(f)
        out.release()
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(audio), "-i", str(avi),
               "-strict", "-2", "-q:v", "1", str(outfile)]
        subprocess.run(cmd, check=True)
    return len(chunks)
