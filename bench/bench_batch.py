"""Batch throughput: rows per minute in one process, in 2 worker processes and on 2 actors of a local
Ray, with the memory of each worker.

    python bench/bench_batch.py [--rows 6] [--seconds 3] [--mode fast] [--skip-ray] [--checkpoint C]

Each case is a fresh ``wav2lip-uhq batch`` command (imports, model loading and Ray's start-up
included: what a user waits for), on the bundled photo and the bundled speech cut to ``--seconds``,
with a generated checkpoint in the released layout unless ``--checkpoint`` names a real one. The
per-row overhead of Ray is its seconds per row minus those of the 2 local workers. Why: on a
machine with few cores, more workers only help while a single run leaves cores idle; the numbers
say when to use ``--workers`` and what a Ray actor costs on top.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLES = ROOT / "wav2lip_uhq" / "examples"


def make_inputs(folder: Path, seconds: float, checkpoint: str | None) -> tuple[Path, Path, str]:
    """(face, audio cut to ``seconds``, checkpoint): a generated checkpoint unless one is given."""
    import numpy as np
    import soundfile as sf

    from wav2lip_uhq.video import read_audio_track

    track = read_audio_track(EXAMPLES / "speech.m4a")  # (channels, n) float32
    mono = np.asarray(track.samples, np.float32).mean(axis=0)
    audio = folder / "speech.wav"
    sf.write(audio, mono[: int(seconds * track.sample_rate)], track.sample_rate)
    if checkpoint:
        return EXAMPLES / "face.jpg", audio, checkpoint
    import torch

    from wav2lip_uhq.models import Wav2Lip
    from wav2lip_uhq.models.fill import fill_rule_state_dict

    path = folder / "w2l.pth"
    torch.save({"state_dict": fill_rule_state_dict(Wav2Lip(96))}, path)
    return EXAMPLES / "face.jpg", audio, str(path)


def run_case(name: str, extra: list[str], manifest: Path, work: Path, common: list[str]) -> dict:
    out = work / name
    cmd = [sys.executable, "-m", "wav2lip_uhq", "batch", str(manifest), "--out-dir", str(out), "-q", *common, *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{name}: exit {res.returncode}\n{res.stderr[-2000:]}")
    summary = json.loads((out / "batch_summary.json").read_text())
    per_worker: dict[str, float] = {}
    for r in summary["results"]:
        per_worker[r["worker"]] = max(per_worker.get(r["worker"], 0.0), r["worker_rss_mb"] or 0.0)
    rows = summary["done"]
    return {"case": name, "rows": rows, "wall": wall, "rows_per_min": rows / wall * 60,
            "s_per_row": wall / rows, "workers": len(per_worker), "rss": sorted(per_worker.values()),
            "frames": summary["frames"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=6)
    p.add_argument("--seconds", type=float, default=3.0, help="audio per row")
    p.add_argument("--mode", default="fast")
    p.add_argument("--checkpoint", help="a real checkpoint (default: a generated one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-ray", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        face, audio, ckpt = make_inputs(work, args.seconds, args.checkpoint)
        manifest = work / "rows.csv"
        manifest.write_text("face,audio,out\n" + "".join(f"{face},{audio},row{i}.mp4\n" for i in range(args.rows)))
        common = ["--checkpoint", ckpt, "--mode", args.mode, "--box", "110", "330", "90", "300",
                  "--device", args.device, "--cache-dir", str(work / "cache"), "--no-download"]
        cases = [("1 process", []), ("2 workers", ["--workers", "2"])]
        if not args.skip_ray:
            cases.append(("ray local, 2 actors", ["--ray", "local", "--workers", "2"]))
        results = [run_case(name, extra, manifest, work, common) for name, extra in cases]
    print(f"{args.rows} rows of {args.seconds:g} s ({results[0]['frames'] // results[0]['rows']} frames), mode "
          f"{args.mode}, {args.device}; each case a fresh command (start-up and model loading included)\n")
    print("| case | rows/min | s/row | workers | peak RSS per worker (MiB) |")
    print("|---|---:|---:|---:|---|")
    for r in results:
        rss = ", ".join(f"{m:.0f}" for m in r["rss"])
        print(f"| {r['case']} | {r['rows_per_min']:.1f} | {r['s_per_row']:.2f} | {r['workers']} | {rss} |")
    if len(results) == 3:
        print(f"\nRay overhead per row vs 2 local workers: {results[2]['s_per_row'] - results[1]['s_per_row']:+.2f} s")


if __name__ == "__main__":
    main()
