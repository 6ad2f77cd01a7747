"""Training data: frame/mel sources, the packed cache, and the SyncNet / Wav2Lip datasets.

Two sources feed the same datasets:

* :class:`JpegSource` reads ``preprocessed_root/<entry>/{i}.jpg`` + ``audio.wav`` like upstream
  (``mel_cache=False`` recomputes the whole mel for every sample, exactly upstream's way;
  the default caches one mel per video in memory).
* :class:`PackedSource` reads a cache built once by :func:`build_cache`: every face already
  resized to the training resolution in one memory-mapped uint8 array, the mel of every
  video precomputed in another. No JPEG decoding, no STFT per sample.

Sampling is a pure function of (seed, sample index): a sample does not depend on which
process or worker draws it. That makes runs resumable at any step and a 2-process DDP run
equal to a 1-process run with the doubled batch.

Bad data never hangs a loader: a window that cannot be used is re-drawn a bounded number
of times (counted, with a periodic warning); a video that fails to read is excluded; when
too many draws fail or too many videos are broken, :class:`DataError` says so.

Mel alignment (see README "Mel alignment"): frame f's 16-column window starts at column
``int(80 * (f + mel_offset) / 25)``. Inference (upstream and this engine) gives output frame i
the window starting at ``int(i * 80 / fps)``, i.e. ``mel_offset = 0``; upstream's generator
training used ``f - 1`` (``mel_offset = -1``). The default 0 makes training match inference.
The SyncNet window of frames f..f+4 starts at frame f in both trainings.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from wav2lip_uhq.audio import MEL_STEP, N_MELS, melspectrogram
from wav2lip_uhq.errors import InputError

from . import FPS, SYNC_T

log = logging.getLogger(__name__)

MEL_PER_FRAME = 80.0 / FPS


class DataError(RuntimeError):
    """The dataset is unusable (too much bad data); the message says what and where."""


def mel_start(frame: float) -> int:
    """First mel column of the window for video frame ``frame`` (upstream's crop_audio_window)."""
    return int(MEL_PER_FRAME * frame)


# --------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------


class Source:
    """Per-video access: frame ids, faces at training size, mel (T, 80)."""

    img_size: int
    entries: list[str]

    def frame_ids(self, v: int) -> np.ndarray:
        raise NotImplementedError

    def frames(self, v: int, ids: Sequence[int]) -> np.ndarray:
        """uint8 (n, S, S, 3) BGR; raises on a missing/unreadable frame."""
        raise NotImplementedError

    def mel(self, v: int) -> np.ndarray:
        """float32 (T_mel, 80) (upstream's transposed layout)."""
        raise NotImplementedError


def _list_ids(folder: Path) -> np.ndarray:
    ids = []
    for name in os.listdir(folder):
        if name.endswith(".jpg"):
            stem = name[:-4]
            if stem.isdigit():
                ids.append(int(stem))
    return np.array(sorted(ids), dtype=np.int64)


def read_face(path: Path, img_size: int) -> np.ndarray:
    img = cv2.imread(str(path))
    if img is None:
        raise OSError(f"{path}: unreadable image")
    return cv2.resize(img, (img_size, img_size))


def compute_mel(wav_path: Path) -> np.ndarray:
    """(T, 80) float32 mel of a preprocessed ``audio.wav`` (16 kHz)."""
    import soundfile as sf

    wav, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    if sr != 16000:
        from wav2lip_uhq.audio import load_audio

        wav = load_audio(wav_path)
    return np.ascontiguousarray(melspectrogram(wav).T)


class JpegSource(Source):
    def __init__(self, root: str | Path, entries: Sequence[str], img_size: int, mel_cache: bool = True) -> None:
        self.root = Path(root)
        self.entries = list(entries)
        self.img_size = img_size
        self.mel_cache = mel_cache
        self._ids: dict[int, np.ndarray] = {}
        self._mels: dict[int, np.ndarray] = {}

    def frame_ids(self, v: int) -> np.ndarray:
        if v not in self._ids:
            self._ids[v] = _list_ids(self.root / self.entries[v])
        return self._ids[v]

    def frames(self, v: int, ids: Sequence[int]) -> np.ndarray:
        folder = self.root / self.entries[v]
        return np.stack([read_face(folder / f"{i}.jpg", self.img_size) for i in ids])

    def mel(self, v: int) -> np.ndarray:
        if not self.mel_cache:
            return compute_mel(self.root / self.entries[v] / "audio.wav")
        if v not in self._mels:
            self._mels[v] = compute_mel(self.root / self.entries[v] / "audio.wav")
        return self._mels[v]


class PackedSource(Source):
    """Memory-mapped cache written by :func:`build_cache` (opened lazily: fork/spawn safe)."""

    def __init__(self, cache_dir: str | Path, entries: Sequence[str] | None = None) -> None:
        self.dir = Path(cache_dir)
        meta_path = self.dir / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{self.dir}: not a packed training cache (no meta.json); build it with `python -m train cache`")
        meta = json.loads(meta_path.read_text())
        self.img_size = int(meta["img_size"])
        self._n_frames = int(meta["n_frames"])
        self._n_mel = int(meta["n_mel"])
        by_name = {m["name"]: m for m in meta["videos"]}
        names = list(entries) if entries is not None else list(by_name)
        missing = [n for n in names if n not in by_name]
        if missing:
            log.warning("%d filelist entries are not in the cache %s (e.g. %s); they are skipped",
                        len(missing), self.dir, missing[0])
        self.entries = [n for n in names if n in by_name]
        self._meta = [by_name[n] for n in self.entries]
        self._id_arrays = [np.asarray(m["ids"], dtype=np.int64) for m in self._meta]
        self._frames = None
        self._mel = None

    def _open(self) -> None:
        s = self.img_size
        self._frames = np.memmap(self.dir / "frames.u8", np.uint8, "r", shape=(self._n_frames, s, s, 3))
        self._mel = np.memmap(self.dir / "mel.f32", np.float32, "r", shape=(self._n_mel, N_MELS))

    def frame_ids(self, v: int) -> np.ndarray:
        return self._id_arrays[v]

    def frames(self, v: int, ids: Sequence[int]) -> np.ndarray:
        if self._frames is None:
            self._open()
        have = self._id_arrays[v]
        pos = np.searchsorted(have, ids)
        if np.any(pos >= len(have)) or np.any(have[np.minimum(pos, len(have) - 1)] != ids):
            raise KeyError(f"{self.entries[v]}: frames {list(ids)} not all present")
        idx = self._meta[v]["offset"] + pos
        if np.all(np.diff(idx) == 1):
            return np.asarray(self._frames[idx[0] : idx[-1] + 1])
        return np.asarray(self._frames[idx])

    def mel(self, v: int) -> np.ndarray:
        if self._mel is None:
            self._open()
        m = self._meta[v]
        return self._mel[m["mel_offset"] : m["mel_offset"] + m["mel_len"]]


def _cache_one(args) -> tuple[str, np.ndarray, np.ndarray, np.ndarray] | tuple[str, str]:
    root, entry, img_size = args
    folder = Path(root) / entry
    try:
        ids = _list_ids(folder)
        frames = np.stack([read_face(folder / f"{i}.jpg", img_size) for i in ids]) if len(ids) else None
        mel = compute_mel(folder / "audio.wav")
    except (OSError, ValueError, RuntimeError, cv2.error, InputError) as exc:  # unreadable jpg/wav, bad audio
        return entry, f"{type(exc).__name__}: {exc}"
    if frames is None:
        return entry, "no frames"
    return entry, ids, frames, mel


def build_cache(
    preprocessed_root: str | Path,
    entries: Sequence[str],
    out_dir: str | Path,
    img_size: int,
    workers: int = 1,
) -> dict:
    """Pack ``entries`` at ``img_size`` into ``out_dir`` (written in a temp folder, then renamed)."""
    out = Path(out_dir)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    videos, skipped = [], []
    n_frames = n_mel = 0
    jobs = [(str(preprocessed_root), e, img_size) for e in entries]
    try:
        with open(tmp / "frames.u8", "wb") as ff, open(tmp / "mel.f32", "wb") as fm:
            pool = mp.get_context("spawn").Pool(workers) if workers > 1 else None
            try:
                results = pool.imap(_cache_one, jobs, chunksize=4) if pool else map(_cache_one, jobs)
                for res in results:
                    if len(res) == 2:
                        skipped.append({"entry": res[0], "reason": res[1]})
                        log.warning("cache: skipping %s (%s)", res[0], res[1])
                        continue
                    entry, ids, frames, mel = res
                    ff.write(np.ascontiguousarray(frames, np.uint8).tobytes())
                    fm.write(np.ascontiguousarray(mel, np.float32).tobytes())
                    videos.append({"name": entry, "offset": n_frames, "ids": ids.tolist(),
                                   "mel_offset": n_mel, "mel_len": int(mel.shape[0])})
                    n_frames += len(ids)
                    n_mel += int(mel.shape[0])
            finally:
                if pool:
                    pool.close()
                    pool.join()
        meta = {"img_size": img_size, "n_frames": n_frames, "n_mel": n_mel, "videos": videos,
                "skipped": skipped, "fps": FPS}
        (tmp / "meta.json").write_text(json.dumps(meta))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("cache %s: %d videos, %d frames at %d px (%.1f MB), %d skipped", out, len(videos), n_frames,
             img_size, n_frames * img_size * img_size * 3 / 1e6, len(skipped))
    return {"videos": len(videos), "frames": n_frames, "skipped": skipped}


def open_source(
    preprocessed_root: str | Path | None, cache: str | Path | None, entries: Sequence[str], img_size: int,
    mel_cache: bool = True,
) -> Source:
    if cache:
        src = PackedSource(cache, entries)
        if src.img_size != img_size:
            raise DataError(f"{cache}: cache holds {src.img_size}px faces, training needs {img_size}px; "
                            f"rebuild it with --img-size {img_size}")
        return src
    if preprocessed_root is None:
        raise DataError("give --data-root (preprocessed folder) or --cache")
    return JpegSource(preprocessed_root, entries, img_size, mel_cache)


# --------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------


@dataclass
class BadDataPolicy:
    max_redraws: int = 100  # failed draws for one sample before giving up
    max_bad_video_fraction: float = 0.5  # broken videos (read errors) before giving up
    warn_every: int = 100


class _WindowDataset(Dataset):
    """Shared sampling: random video, random valid window, bounded redraws."""

    def __init__(self, source: Source, seed: int = 0, policy: BadDataPolicy | None = None, T: int = SYNC_T) -> None:
        if not source.entries:
            raise DataError("the dataset is empty (no usable video in the filelist)")
        self.source = source
        self.seed = seed
        self.policy = policy or BadDataPolicy()
        self.T = T
        self.bad_videos: set[int] = set()
        self.redraws = 0
        self.draws = 0

    def __len__(self) -> int:  # nominal; samplers index by global sample number
        return 1 << 62

    def _fail(self, v: int, why: str, broken: bool = False) -> None:
        self.redraws += 1
        if broken and v not in self.bad_videos:
            self.bad_videos.add(v)
            log.warning("excluding %s: %s", self.source.entries[v], why)
            if len(self.bad_videos) > self.policy.max_bad_video_fraction * len(self.source.entries):
                raise DataError(f"{len(self.bad_videos)} of {len(self.source.entries)} videos are unreadable "
                                f"(last: {self.source.entries[v]}: {why})")
        if self.redraws % self.policy.warn_every == 0:
            log.warning("%d of %d window draws were unusable so far (last: %s: %s)", self.redraws, self.draws,
                        self.source.entries[v], why)

    def window_ok(self, ids_set: np.ndarray, start: int) -> bool:
        pos = np.searchsorted(ids_set, start)
        return pos + self.T <= len(ids_set) and ids_set[pos] == start and ids_set[pos + self.T - 1] == start + self.T - 1

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, int(index)])
        n = len(self.source.entries)
        last = "no usable video"
        for _ in range(self.policy.max_redraws):
            self.draws += 1
            v = int(rng.integers(n))
            if v in self.bad_videos:
                continue
            try:
                out = self._draw(rng, v)
            except (OSError, KeyError, ValueError, RuntimeError) as exc:
                last = f"{self.source.entries[v]}: {exc}"
                self._fail(v, str(exc), broken=True)
                continue
            if isinstance(out, str):
                last = f"{self.source.entries[v]}: {out}"
                self._fail(v, out)
                continue
            return out
        raise DataError(f"no usable sample after {self.policy.max_redraws} draws (last problem: {last}); "
                        "check the data (videos shorter than 6 frames, missing audio, gaps)")

    def _draw(self, rng: np.random.Generator, v: int):
        raise NotImplementedError

    def _pick_pair(self, rng: np.random.Generator, v: int) -> tuple[np.ndarray | None, int, int]:
        """Video v's frame ids and two random frame ids (target, other), the same draws for both
        datasets (upstream: img_name, wrong_img_name); ids None when the video is too short."""
        ids = self.source.frame_ids(v)
        if len(ids) < self.T + 1:
            return None, 0, 0
        return ids, int(ids[int(rng.integers(len(ids)))]), int(ids[int(rng.integers(len(ids)))])


def _lower_half_stack(window: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) uint8 -> (3T, S/2, S) float: channels f0 B,G,R, f1 B,G,R, ... (upstream)."""
    s = window.shape[1]
    x = window[:, s // 2 :].astype(np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(-1, s - s // 2, s))


class SyncNetDataset(_WindowDataset):
    """Upstream's expert sampling: 5-frame window, p 0.5 in-sync (y=1) or another window of the
    same video (y=0); audio always at the chosen frame. Returns (face (15,S/2,S), mel (1,80,16), y (1,))."""

    def __init__(self, source: Source, seed: int = 0, policy: BadDataPolicy | None = None,
                 min_negative_distance: int = 1) -> None:
        super().__init__(source, seed, policy)
        self.min_negative_distance = min_negative_distance

    def _draw(self, rng: np.random.Generator, v: int):
        ids, pos, wrong = self._pick_pair(rng, v)
        if ids is None:
            return "too few frames"
        if abs(wrong - pos) < self.min_negative_distance:
            return "negative too close"
        y = float(rng.random() < 0.5)
        chosen = int(pos if y else wrong)
        if not self.window_ok(ids, chosen):
            return "window crosses a gap or the end"
        mel = self.source.mel(v)
        start = mel_start(int(pos))
        if start + MEL_STEP > mel.shape[0]:
            return "audio shorter than video"
        window = self.source.frames(v, range(chosen, chosen + self.T))
        x = torch.from_numpy(_lower_half_stack(window))
        m = torch.from_numpy(np.ascontiguousarray(mel[start : start + MEL_STEP].T)).unsqueeze(0)
        return x, m, torch.tensor([y], dtype=torch.float32)


class Wav2LipDataset(_WindowDataset):
    """Upstream's generator sampling. Returns
    x (6,T,S,S): masked target (lower half zeroed) + reference window from elsewhere in the video;
    indiv_mels (T,1,80,16): one window per frame (aligned by ``mel_offset``);
    mel (1,80,16): the SyncNet window of the target frames; y (3,T,S,S): ground truth. BGR [0, 1]."""

    def __init__(self, source: Source, seed: int = 0, policy: BadDataPolicy | None = None, mel_offset: int = 0) -> None:
        super().__init__(source, seed, policy)
        self.mel_offset = mel_offset

    def _draw(self, rng: np.random.Generator, v: int):
        ids, pos, wrong = self._pick_pair(rng, v)
        if ids is None:
            return "too few frames"
        if pos == wrong:
            return "reference equals target"
        if not (self.window_ok(ids, pos) and self.window_ok(ids, wrong)):
            return "window crosses a gap or the end"
        mel = self.source.mel(v)
        first = pos + self.mel_offset
        if first < 0:
            return "no audio before the window (mel_offset)"
        starts = [mel_start(first + k) for k in range(self.T)] + [mel_start(pos)]
        if max(starts) + MEL_STEP > mel.shape[0]:
            return "audio shorter than video"
        window = self.source.frames(v, range(pos, pos + self.T)).astype(np.float32) / 255.0
        ref = self.source.frames(v, range(wrong, wrong + self.T)).astype(np.float32) / 255.0
        y = window.transpose(3, 0, 1, 2)  # (3, T, S, S)
        masked = y.copy()
        masked[:, :, y.shape[2] // 2 :] = 0.0
        x = np.concatenate([masked, ref.transpose(3, 0, 1, 2)], axis=0)
        mels = np.stack([mel[s : s + MEL_STEP].T for s in starts])  # (T+1, 80, 16)
        return (
            torch.from_numpy(np.ascontiguousarray(x)),
            torch.from_numpy(np.ascontiguousarray(mels[: self.T, None])),
            torch.from_numpy(np.ascontiguousarray(mels[self.T][None])),
            torch.from_numpy(np.ascontiguousarray(y)),
        )


class StepSampler(Sampler[int]):
    """Global sample indices for one process: step s, micro-batch m, rank r, item j ->
    ``s * batch + m * world * micro + r * micro + j`` (batch = world * micro * accum).

    The set of samples in a step depends only on the step, not on the number of processes,
    so DDP equals single-process training with the same total batch, and resuming at step s
    reproduces exactly what an uninterrupted run would have seen.
    """

    def __init__(self, micro_batch: int, accum: int = 1, rank: int = 0, world: int = 1, start_step: int = 0,
                 offset: int = 0) -> None:
        self.micro, self.accum, self.rank, self.world = micro_batch, accum, rank, world
        self.start_step = start_step
        self.offset = offset

    def __iter__(self):
        batch = self.micro * self.world * self.accum
        step = self.start_step
        while True:
            for m in range(self.accum):
                base = self.offset + step * batch + m * self.world * self.micro + self.rank * self.micro
                yield from range(base, base + self.micro)
            step += 1

    def __len__(self) -> int:
        return 1 << 62


def eval_indices(n_batches: int, batch: int, rank: int, world: int, chunk: int | None = None) -> list[list[int]]:
    """Fixed eval samples: ``n_batches * batch`` (``batch`` = the global batch size), the same at every
    eval and for any number of processes; this rank's share in chunks of ``chunk`` (its micro-batch)."""
    mine = list(range(n_batches * batch))[rank::world]
    chunk = chunk or batch
    return [mine[i : i + chunk] for i in range(0, len(mine), chunk)]
