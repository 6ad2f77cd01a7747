"""Training-loader throughput: packed cache vs upstream's way (JPEG decode + mel per sample).

    python bench/bench_train_loader.py [--samples 400] [--kind wav2lip|syncnet]

Builds a synthetic dataset (offline), then times the same sampling (same indices) through
``PackedSource`` and through ``JpegSource(mel_cache=False)``, which reads JPEGs with OpenCV and
recomputes the whole clip's mel for every sample, like upstream's dataset.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's train/ package


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--kind", choices=["wav2lip", "syncnet"], default="wav2lip")
    ap.add_argument("--seconds", type=float, default=8.0, help="clip length (upstream's mel cost grows with it)")
    args = ap.parse_args()

    from train.data import JpegSource, PackedSource, SyncNetDataset, Wav2LipDataset, build_cache
    from train.preprocess import PreprocessConfig, list_preprocessed, preprocess
    from train.synthetic import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dataset(root / "raw", speakers=4, clips_per_speaker=2, seconds=args.seconds)
        preprocess(PreprocessConfig(str(root / "raw"), str(root / "pre"), detector="box", box=(30, 140, 28, 132),
                                    workers=2))
        entries = list_preprocessed(root / "pre")
        build_cache(root / "pre", entries, root / "cache", 96)
        ds_cls = Wav2LipDataset if args.kind == "wav2lip" else SyncNetDataset
        results = {}
        for name, src in (("upstream (jpeg + mel per sample)", JpegSource(root / "pre", entries, 96, mel_cache=False)),
                          ("packed cache", PackedSource(root / "cache", entries))):
            ds = ds_cls(src, seed=0)
            ds[0]
            t = time.perf_counter()
            for i in range(1, args.samples + 1):
                ds[i]
            results[name] = args.samples / (time.perf_counter() - t)
            print(f"{name:35s} {results[name]:8.1f} samples/s")
        up, ours = results.values()
        print(f"speed-up: {ours / up:.1f}x ({args.kind} samples, {args.seconds:.0f} s clips)")


if __name__ == "__main__":
    main()
