"""Raw videos -> upstream's preprocessed layout, and the train/val/test filelists.

Output, as upstream's ``preprocess.py`` writes it (so upstream scripts read it too)::

    preprocessed_root/<folder>/<id>/{0..N}.jpg   raw face crops (JPEG q95), 0-based frame index,
                                                 frames without a face skipped (gaps kept)
    preprocessed_root/<folder>/<id>/audio.wav    16 kHz mono PCM16

Differences that remove upstream's pains: any nested folder of videos; conversion to
25 fps / 16 kHz; the engine's face detectors; parallel processes and ``--shard i/N``; one
video is written to a temporary folder and renamed into place when complete (a kill never
leaves a half video that looks finished), finished videos are skipped on a rerun, and a
JSON report lists every skipped video with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from wav2lip_uhq.audio import load_audio
from wav2lip_uhq.errors import InputError
from wav2lip_uhq.files import write_atomic

from . import FPS
from .layouts import VIDEO_EXTS, Clip, find_videos, list_clips  # noqa: F401 - VIDEO_EXTS, find_videos re-exported
from .media import iter_video_frames, write_wav

log = logging.getLogger(__name__)

DONE = ".done.json"  # marker written last inside a finished video folder


@dataclass
class PreprocessConfig:
    data_root: str
    preprocessed_root: str
    detector: str = "s3fd"  # s3fd | dlib | box
    box: tuple[int, int, int, int] | None = None  # top, bottom, left, right (detector "box")
    device: str = "cpu"
    batch_size: int = 16
    workers: int = 1
    shard: tuple[int, int] = (0, 1)  # (i, N): this machine's share of the videos
    fps: float = FPS
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right, added to each box
    min_frames: int = 16  # upstream's loader rejects videos with <= 15 frames
    jpeg_quality: int = 95
    layout: str = "folder"  # lrs2 | folder | cmlr | grid | hdtf (train.layouts)
    audio_root: str | None = None  # grid: <speaker>/<id>.wav when the videos have no sound
    time_ranges: str | None = None  # hdtf: *_annotion_time.txt file or folder
    max_seconds: float | None = None  # hdtf: cut longer ranges into clips of at most this length


@dataclass
class VideoResult:
    video: str
    status: str  # done | skipped | failed
    reason: str = ""
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0


def output_dir(video: Path, data_root: Path, preprocessed_root: Path) -> Path:
    rel = video.relative_to(data_root)
    return preprocessed_root / rel.parent / rel.stem


_DETECTORS: dict[tuple, object] = {}  # one detector per process and setting (loaded once)


def _detector(cfg: PreprocessConfig):
    key = (cfg.detector, cfg.box, cfg.device, cfg.batch_size)
    if key not in _DETECTORS:
        from wav2lip_uhq.faces import create_detector

        if cfg.detector == "box":
            _DETECTORS[key] = create_detector("box", box=cfg.box)
        elif cfg.detector == "s3fd":
            _DETECTORS[key] = create_detector("s3fd", device=cfg.device, batch_size=cfg.batch_size)
        else:
            _DETECTORS[key] = create_detector(cfg.detector, device=cfg.device)
    return _DETECTORS[key]


def _clip_frames(clip: Clip, fps: float):
    """The clip's frames at ``fps``: those whose time lies in [start, end) when it has a range."""
    for k, frame in enumerate(iter_video_frames(clip.video, fps)):
        t = k / fps
        if clip.start is not None and t < clip.start - 1e-9:
            continue
        if clip.end is not None and t >= clip.end - 1e-9:
            return
        yield frame


def _clip_audio(clip: Clip) -> np.ndarray:
    wav = load_audio(clip.audio or clip.video)
    if clip.start is None:
        return wav
    a, b = round(clip.start * 16000), round(clip.end * 16000)
    if a >= len(wav):
        raise InputError(f"{clip.audio or clip.video}: audio ends before {clip.start:.2f} s")
    return wav[a:b]


def process_video(clip: Clip | Path, cfg: PreprocessConfig) -> VideoResult:
    """Preprocess one clip (or a video of the folder layout) atomically; never raises (failures are reported)."""
    t0 = time.time()
    data_root, pre_root = Path(cfg.data_root), Path(cfg.preprocessed_root)
    if isinstance(clip, Path):
        rel = clip.relative_to(data_root).with_suffix("")
        clip = Clip(clip, rel.as_posix(), rel.parent.as_posix())
    out = pre_root / clip.entry
    name = clip.video.relative_to(data_root).as_posix() + (
        f" [{clip.start:.2f}-{clip.end:.2f} s]" if clip.start is not None else "")
    if (out / DONE).is_file():
        return VideoResult(name, "done", "already preprocessed")
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        try:
            wav = _clip_audio(clip)
        except (InputError, OSError, ValueError, RuntimeError) as exc:  # no audio stream, silent, unreadable
            return VideoResult(name, "skipped", f"audio: {exc}")
        detector = _detector(cfg)
        n_frames = n_faces = 0
        batch: list[np.ndarray] = []

        def flush(start: int) -> int:
            found = 0
            boxes = detector.detect([np.ascontiguousarray(f[:, :, ::-1]) for f in batch])  # dlib misreads strided views
            for j, (frame, dets) in enumerate(zip(batch, boxes)):
                if dets is None or len(dets) == 0:
                    continue
                x1, y1, x2, y2 = dets[int(np.argmax(dets[:, 4]))][:4]
                h, w = frame.shape[:2]
                top, bottom, left, right = cfg.pads
                y1, y2 = max(0, int(y1) - top), min(h, int(y2) + bottom)
                x1, x2 = max(0, int(x1) - left), min(w, int(x2) + right)
                if y2 - y1 < 8 or x2 - x1 < 8:
                    continue
                cv2.imwrite(str(tmp / f"{start + j}.jpg"), frame[y1:y2, x1:x2],
                            [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
                found += 1
            return found

        try:
            for frame in _clip_frames(clip, cfg.fps):
                batch.append(frame)
                if len(batch) == cfg.batch_size:
                    n_faces += flush(n_frames)
                    n_frames += len(batch)
                    batch = []
            if batch:
                n_faces += flush(n_frames)
                n_frames += len(batch)
        except (InputError, OSError, ValueError, RuntimeError) as exc:  # corrupt or truncated stream
            return VideoResult(name, "skipped", f"video: {exc}", n_frames, n_faces)
        if n_faces < cfg.min_frames:
            return VideoResult(name, "skipped", f"only {n_faces} frames with a face (< {cfg.min_frames})",
                               n_frames, n_faces)
        write_wav(tmp / "audio.wav", wav)
        meta = {"source": name, "speaker": clip.speaker, "frames": n_frames, "faces": n_faces, "fps": cfg.fps,
                "audio_seconds": len(wav) / 16000, "detector": cfg.detector, "layout": cfg.layout}
        (tmp / DONE).write_text(json.dumps(meta))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return VideoResult(name, "done", "", n_frames, n_faces, time.time() - t0)
    except Exception as exc:  # keep going: one bad file must not stop a dataset
        log.exception("failed on %s", clip.video)
        return VideoResult(name, "failed", f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OWNER = ".owner.json"  # inside a video's temporary folder: which process writes it


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # unknown owner (os.kill(0 or -1) would address a whole process group)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def clean_stale_tmp(preprocessed_root: str | Path) -> int:
    """Remove the temporary folders of killed workers on this machine (``.tmp-*`` whose process is gone).

    Folders of live processes and of other hosts (shards sharing a filesystem) are left alone."""
    removed = 0
    host = socket.gethostname()
    for tmp in Path(preprocessed_root).rglob(".tmp-*"):
        if not tmp.is_dir():
            continue
        try:
            owner = json.loads((tmp / OWNER).read_text())
        except (OSError, ValueError):
            owner = {"host": host, "pid": int(tmp.name.rsplit("-", 1)[-1]) if tmp.name[-1].isdigit() else -1}
        if owner.get("host") == host and not _pid_alive(int(owner.get("pid", -1))):
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d temporary folders left by killed workers", removed)
    return removed


def _work(args):
    return process_video(*args)


def preprocess(cfg: PreprocessConfig) -> dict:
    """Preprocess this shard's videos; writes and returns the report."""
    videos = list_clips(cfg.layout, cfg.data_root, cfg.audio_root, cfg.time_ranges, cfg.max_seconds)
    if Path(cfg.preprocessed_root).is_dir():
        clean_stale_tmp(cfg.preprocessed_root)
    i, n = cfg.shard
    videos = videos[i::n]
    log.info("preprocessing %d videos (shard %d/%d) with %d workers", len(videos), i, n, cfg.workers)
    results: list[VideoResult] = []
    jobs = [(v, cfg) for v in videos]
    if cfg.workers > 1:
        with mp.get_context("spawn").Pool(cfg.workers) as pool:
            for r in pool.imap_unordered(_work, jobs):
                results.append(r)
                log.info("%s: %s %s", r.video, r.status, r.reason)
    else:
        for job in jobs:
            r = _work(job)
            results.append(r)
            log.info("%s: %s %s", r.video, r.status, r.reason)
    results.sort(key=lambda r: r.video)
    report = {
        "shard": [i, n],
        "videos": len(results),
        "done": sum(r.status == "done" for r in results),
        "skipped": [asdict(r) for r in results if r.status != "done"],
        "results": [asdict(r) for r in results],
    }
    root = Path(cfg.preprocessed_root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / (f"preprocess_report.shard{i}of{n}.json" if n > 1 else "preprocess_report.json")
    write_atomic(path, json.dumps(report, indent=1))
    return report


def list_preprocessed(preprocessed_root: str | Path) -> list[str]:
    """Finished video folders as filelist entries ``<folder>/<id>`` (relative, '/'-separated)."""
    root = Path(preprocessed_root)
    return sorted(p.parent.relative_to(root).as_posix() for p in root.rglob(DONE))


def _group_key(root: Path, entry: str) -> str:
    """The clip's speaker as preprocessing recorded it, else its folder (LRS2: the source video)."""
    try:
        speaker = json.loads((root / entry / DONE).read_text()).get("speaker")
    except (OSError, ValueError, AttributeError):
        speaker = None
    return speaker or (entry.rsplit("/", 1)[0] if "/" in entry else entry)


def make_filelists(
    preprocessed_root: str | Path,
    out_dir: str | Path,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Write train.txt / val.txt / test.txt (upstream format: one ``folder/id`` per line).

    The split is by speaker (recorded by ``preprocess``; else the folder: LRS2's source video), so
    no speaker appears in two splits;
    folders are ordered by a hash of (seed, name), which keeps the split stable when data
    is added. With >= 3 folders val and test get at least one folder each.
    """
    entries = list_preprocessed(preprocessed_root)
    groups: dict[str, list[str]] = {}
    for e in entries:
        groups.setdefault(_group_key(Path(preprocessed_root), e), []).append(e)
    names = sorted(groups, key=lambda g: hashlib.sha1(f"{seed}:{g}".encode()).hexdigest())
    n = len(names)
    n_test = max(1 if n >= 3 and test_fraction > 0 else 0, math.floor(n * test_fraction))
    n_val = max(1 if n >= 3 and val_fraction > 0 else 0, math.floor(n * val_fraction))
    if n < 3:  # too few folders: split clips instead (still deterministic)
        ordered = sorted(entries, key=lambda e: hashlib.sha1(f"{seed}:{e}".encode()).hexdigest())
        k = len(ordered)
        nv = max(1, math.floor(k * val_fraction)) if k >= 2 else 0
        splits = {"val": ordered[:nv], "test": [], "train": ordered[nv:]}
    else:
        splits = {
            "test": [e for g in names[:n_test] for e in groups[g]],
            "val": [e for g in names[n_test : n_test + n_val] for e in groups[g]],
            "train": [e for g in names[n_test + n_val :] for e in groups[g]],
        }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        items = sorted(items)
        splits[split] = items
        write_atomic(out / f"{split}.txt", "".join(f"{e}\n" for e in items))
    return splits


def read_filelist(path: str | Path, flag: str | None = None) -> list[str]:
    """Upstream's reading: first whitespace token of each non-empty line (LRS2 test tags dropped).

    A missing file raises ValueError naming ``flag``, the option that sets it."""
    if not Path(path).is_file():
        hint = f"; pass {flag} FILE" if flag else ""
        raise ValueError(f"{path}: no such filelist{hint} (`python -m train filelists` writes train/val/test.txt)")
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.split()[0])
    return out
