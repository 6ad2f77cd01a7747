"""Why Savitzky-Golay for landmarks: jitter vs lag of candidate filters on synthetic tracks.

    python bench/bench_landmark_smoothing.py

A landmark track = true motion (still, then a fast head turn, then still) + detector jitter.
Lag is the mean signed error during the fast segment (a causal filter trails the motion);
jitter is the RMS frame-to-frame change of the error (what the eye sees as shaking).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wav2lip_uhq.faces.landmarks import smooth_landmarks  # noqa: E402


def one_euro(x: np.ndarray, fps: float = 25.0, min_cutoff: float = 1.0, beta: float = 0.05) -> np.ndarray:
    def alpha(cutoff):
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * fps)

    out = np.empty_like(x)
    prev, dprev = x[0], np.zeros_like(x[0])
    out[0] = x[0]
    for i in range(1, len(x)):
        dx = (x[i] - prev) * fps
        dprev = dprev + alpha(1.0) * (dx - dprev)
        cutoff = min_cutoff + beta * np.abs(dprev)
        prev = prev + alpha(cutoff) * (x[i] - prev)
        out[i] = prev
    return out


def ema(x: np.ndarray, a: float = 0.5) -> np.ndarray:
    out = np.empty_like(x)
    out[0] = x[0]
    for i in range(1, len(x)):
        out[i] = a * x[i] + (1 - a) * out[i - 1]
    return out


def centred_mean(x: np.ndarray, k: int = 5) -> np.ndarray:
    out = x.copy()
    h = k // 2
    for i in range(h, len(x) - h):
        out[i] = x[i - h : i + h + 1].mean(0)
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    n = 200
    t = np.arange(n, dtype=float)
    motion = np.clip((t - 80) / 20, 0, 1)  # a 20-frame head turn
    truth = 300 * (motion * motion * (3 - 2 * motion))  # up to ~22 px/frame
    fast = (t > 82) & (t < 98)
    rows = []
    for noise in (0.7, 1.5, 3.0):
        x = (truth + rng.normal(0, noise, n))[:, None, None].repeat(68, 1).repeat(2, 2)
        x += rng.normal(0, noise, x.shape) * 0.3
        filters = {
            "none": x,
            "EMA 0.5 (causal)": ema(x),
            "One-Euro (causal)": one_euro(x),
            "centred mean 5": centred_mean(x),
            "Savitzky-Golay 7/2": smooth_landmarks(x.astype(np.float32)),
        }
        for name, y in filters.items():
            err = y[:, :, 0] - truth[:, None]
            rows.append((noise, name, np.sqrt((err[5:-5] ** 2).mean()), err[fast].mean(),
                         np.sqrt((np.diff(err[5:-5], axis=0) ** 2).mean())))
    print("| noise px | filter | RMS error px | lag in fast motion px | jitter px/frame |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:+.2f} | {r[4]:.2f} |")


if __name__ == "__main__":
    main()
