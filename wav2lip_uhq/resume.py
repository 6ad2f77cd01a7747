"""Resumable runs: written in segments into a job folder, so that an interrupted run (Interrupt,
Ctrl-C, a crash, a killed process) continues where it stopped instead of from the start.

``<cache>/jobs/<key>/`` (key: a hash of the output path) holds ``part0000.mkv``, ``part0001.mkv``...
(each renamed into place when complete, each starting with a key frame) and ``state.json``,
written atomically after each part: the inputs' content digests, the run's settings (the flat
option values), the output path and the parts done. The run is one pass whose encoder rolls over
to a new part every ``--resume-every`` seconds of video; at the end ``video.join_videos`` copies
the parts' packets into the output (which appears atomically) and muxes the audio once, and the
folder is removed. A resumed run starts at the first unfinished part as a ``--segment`` run does
(the single run's geometry, audio windows and generator batches), so a resumed lossless run is
bit-identical to an uninterrupted one. Interrupted jobs are kept until resumed, discarded
(``wav2lip-uhq jobs --discard``) or ``MAX_AGE_DAYS`` old. Torch-free: the UI lists jobs with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import default_cache_dir, file_digest
from .errors import Cancelled, InputError, Wav2LipUHQError
from .files import write_atomic

if TYPE_CHECKING:
    from .config import RunConfig

log = logging.getLogger(__name__)

STATE = "state.json"
STATE_VERSION = 1
MAX_AGE_DAYS = 7
# Option keys that do not change the frames (or are compared by content instead: the spoken text
# becomes the audio file, whose digest is compared).
UNCOMPARED = frozenset({
    "out", "overwrite", "resume", "resume_every", "results_dir", "cache_dir", "models_dir", "allow_download",
    "trust_torchscript", "device", "text", "text_file", "tts_engine", "voice", "tts_speed", "tts_pause",
})


def jobs_dir(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "jobs"


def job_key(out: str | Path) -> str:
    """A job's folder name: the output it writes (one job per output file)."""
    return hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:20]


def not_resumable(config: RunConfig) -> str | None:
    """Why ``config`` is not written in segments (None: it is)."""
    from .outputs import extra_kinds  # outputs imports this module

    if not config.resume_every:
        return "--resume-every is 0 (off)"
    if config.frames.segment is not None:
        return "a --segment run is one part of a split run"
    if extra_kinds(config):
        return "a run with extra outputs (--extra-outputs, --debug-video) is written in one piece"
    if config.mode == "uhq" and config.refine.temporal_blend > 0:
        return ("uhq with --temporal-blend carries each refinement into the next frame, so it cannot start "
                "mid-run (it is written in one piece)")
    return None


def settings_of(config: RunConfig) -> dict[str, Any]:
    """The flat option values of ``config`` as JSON has them (what a state file holds)."""
    from .options import values_from_config

    return json.loads(json.dumps(values_from_config(config), default=str))


def _inputs(config: RunConfig) -> dict[str, Path]:
    """The run's input files by role (the extra speakers' audio too)."""
    speakers = {f"speaker {k + 2} audio": Path(sp.audio) for k, sp in enumerate(getattr(config, "speakers", ()))}
    return {"face": Path(config.face), "audio": Path(config.audio), **speakers}


def _digests(config: RunConfig) -> dict[str, str]:
    return {what: file_digest(path) for what, path in _inputs(config).items()}


@dataclass
class JobState:
    """One job folder's state file, as read."""

    folder: Path
    data: dict

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def out(self) -> Path:
        return Path(self.data["out"])

    @property
    def parts(self) -> list[dict]:
        return list(self.data.get("parts", []))

    @property
    def frames_done(self) -> int:
        return self.parts[-1]["end"] if self.parts else 0

    @property
    def frames_total(self) -> int:
        return int(self.data["frames"])

    @property
    def running(self) -> bool:
        """Its output is reserved by a live run (``outputs``' marker)."""
        from .outputs import _stale, marker_for

        marker = marker_for(self.out)
        return marker.exists() and not _stale(marker)

    def describe(self) -> str:
        """One line: what resuming it continues."""
        age = (time.time() - float(self.data.get("updated", 0))) / 60
        when = f"{age:.0f} min ago" if age < 120 else f"{age / 60:.0f} h ago"
        return (f"{Path(self.data['face']).name} + {Path(self.data['audio']).name} -> {self.out.name}: "
                f"{self.frames_done}/{self.frames_total} frames done (mode {self.data['values'].get('mode')}, "
                f"last saved {when})")


def load_job(folder: Path) -> JobState | None:
    """The job in ``folder``, or None when there is none (or its state is unreadable)."""
    try:
        data = json.loads((folder / STATE).read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION or not {"out", "frames", "values", "digests"} <= set(data):
            raise ValueError("not a state file of this version")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable job state (%s); ignored", folder, exc)
        return None
    return JobState(folder, data)


def list_jobs(cache_dir: str | Path | None = None, prune: bool = True) -> list[JobState]:
    """The jobs in the cache, the most recent first; ``prune`` removes those older than
    ``MAX_AGE_DAYS`` and folders without a state (left by a crash before the first state)."""
    root = jobs_dir(cache_dir)
    try:
        folders = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return []
    jobs, now = [], time.time()
    for folder in folders:
        job = load_job(folder)
        stamp = float(job.data.get("updated", 0)) if job is not None else folder.stat().st_mtime
        too_old = now - stamp > (MAX_AGE_DAYS * 86400 if job is not None else 3600)
        if prune and too_old and not (job is not None and job.running):
            log.info("removing the old job folder %s", folder)
            shutil.rmtree(folder, ignore_errors=True)
        elif job is not None:
            jobs.append(job)
    return sorted(jobs, key=lambda j: float(j.data.get("updated", 0)), reverse=True)


def interrupted_jobs(cache_dir: str | Path | None = None) -> list[JobState]:
    """The jobs no live run is writing: what can be resumed, the most recent first."""
    return [j for j in list_jobs(cache_dir) if not j.running]


def discard_job(cache_dir: str | Path | None, key: str) -> bool:
    """Remove the job ``key`` (its folder name, or the start of it); False when there is none."""
    matches = [j for j in list_jobs(cache_dir, prune=False) if j.key.startswith(key)] if key else []
    if len(matches) != 1:
        return False
    if matches[0].running:
        raise InputError(f"{matches[0].out}: that job is running right now; interrupt it first")
    shutil.rmtree(matches[0].folder, ignore_errors=True)
    return True


def held_by_job(path: Path, config: RunConfig) -> bool:
    """An interrupted job will write ``path``: a new run picking a name leaves it to that job."""
    return (jobs_dir(config.cache_dir) / job_key(path) / STATE).is_file()


# -- resume: which job, and is it the same run --------------------------------------------------
def find_job(config: RunConfig, digests: dict[str, str]) -> JobState:
    """The interrupted job that ``config`` (with ``resume``) continues: the one writing its ``out``
    file, else the most recent whose inputs have the same content. ``InputError`` when none."""
    why = not_resumable(config)
    if why:
        raise InputError(f"{config.face}: cannot resume: {why}")
    out = Path(config.out) if config.out is not None else None
    if out is not None and not out.is_dir():
        job = load_job(jobs_dir(config.cache_dir) / job_key(out))
        if job is None:
            raise InputError(f"{out}: no interrupted job writes this file (`wav2lip-uhq jobs` lists them)")
        return job
    folder = Path(out or config.results_dir).resolve()  # never another folder
    jobs = [j for j in interrupted_jobs(config.cache_dir)
            if j.data["digests"] == digests and j.out.parent.resolve() == folder]
    if not jobs:
        raise InputError(f"{config.face}: no interrupted job with these inputs writes into {folder} "
                         "(`wav2lip-uhq jobs` lists them); run without --resume to start anew")
    return jobs[0]


def check_same(job: JobState, config: RunConfig, digests: dict[str, str]) -> None:
    """Refuse (one line naming it) a resume whose inputs' content (``digests``) or settings changed."""
    inputs = _inputs(config)
    for what, digest in digests.items():
        if job.data["digests"].get(what) != digest:
            was = job.data.get(what)
            raise InputError(f"{inputs[what]}: its content differs from the interrupted job's {what} input"
                             + (f" ({Path(was).name})" if was else "") + "; run without --resume to start anew")
    old, new = job.data["values"], settings_of(config)
    changed = [k for k in sorted(set(old) | set(new)) if k not in UNCOMPARED and old.get(k) != new.get(k)]
    if changed:
        from .options import part_owner

        def flag(k: str) -> str:
            opt = part_owner(k)
            return opt.flag if opt is not None and opt.flag and not opt.parts else k

        what = "; ".join(f"{flag(k)} {_shown(old.get(k))} -> {_shown(new.get(k))}" for k in changed)
        raise InputError(f"{job.out}: cannot resume, the settings differ from the interrupted job's: {what}")


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def resume_config(config: RunConfig) -> RunConfig:
    """``config`` pointed at the interrupted job it resumes (its output path), after the checks."""
    digests = _digests(config)  # each input read once
    job = find_job(config, digests)
    if job.running:
        raise InputError(f"{job.out}: that job is running right now")
    check_same(job, config, digests)
    job.out.parent.mkdir(parents=True, exist_ok=True)  # a results folder the interrupted run made is gone
    return dataclasses.replace(config, out=job.out)


def config_of(job: JobState, host_values: dict | None = None) -> RunConfig:
    """The job's own run config (the UI's Resume): its saved settings and inputs, ``resume`` on;
    ``host_values`` (results/models/cache folders, device) as the host has them now."""
    from .options import config_from_values

    for what in ("face", "audio"):
        if not Path(job.data[what]).is_file():
            raise InputError(f"{job.data[what]}: the interrupted job's {what} input no longer exists")
    values = {k: v for k, v in job.data["values"].items() if v is not None}
    values.update({k: v for k, v in (host_values or {}).items() if v is not None})
    values.update(out=str(job.out), resume=True, overwrite=False)
    return config_from_values(values, job.data["face"], job.data["audio"])


# -- the running job: parts, state, join ----------------------------------------------------------
class RunJob:
    """A resumable run's job folder: which frame it starts at, its parts, its state file."""

    def __init__(self, folder: Path, state: dict, first: int) -> None:
        self.folder, self.state, self.first = folder, state, first

    @property
    def frames(self) -> int:
        return int(self.state["frames"])

    def run_config(self, config: RunConfig) -> RunConfig:
        """The config whose span the run writes: a ``--segment`` from the first unfinished frame."""
        if self.first == 0:
            return config
        return dataclasses.replace(config, frames=dataclasses.replace(config.frames,
                                                                      segment=(self.first, self.frames)))

    def progress(self, report: Callable[[str, int, int], None]) -> Callable[[str, int, int], None]:
        """Progress counted over the whole run (the frames done before the resume included)."""
        if self.first == 0:
            return report
        n = self.frames - self.first

        def shifted(stage: str, done: int, total: int) -> None:
            report(stage, done + self.first if total == n else done, self.frames if total == n else total)

        return shifted

    def encoder(self, width: int, height: int, rate, track, config: RunConfig) -> PartEncoder:
        return PartEncoder(self, width, height, rate, track, config.encode)

    def save(self) -> None:
        self.state["updated"] = time.time()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / STATE, json.dumps(self.state, indent=1, sort_keys=True))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def open_job(config: RunConfig, out: Path, n_out: int, fps: float) -> RunJob | None:
    """The job of a run writing ``out`` (None: not written in segments). With ``config.resume``
    the job's valid parts are kept and the run starts after them; otherwise any job for ``out``
    is discarded and a new one begins. Nothing is written before the encoder opens."""
    if not_resumable(config):
        return None
    list_jobs(config.cache_dir)  # old interrupted jobs go (MAX_AGE_DAYS)
    folder = jobs_dir(config.cache_dir) / job_key(out)
    if not _writable(folder):
        log.warning("%s: the cache is not writable, so this run is written in one piece (not resumable)", folder)
        return None
    old = load_job(folder)
    resuming = config.resume and old is not None
    digests = old.data["digests"] if resuming else _digests(config)  # resume_config found them the same
    state = {"version": STATE_VERSION, "out": str(out), "face": str(Path(config.face).resolve()),
             "audio": str(Path(config.audio).resolve()), "digests": digests, "values": settings_of(config),
             "frames": n_out, "fps": fps, "segment_frames": max(1, round(config.resume_every * fps)), "parts": [],
             "created": time.time()}
    parts: list[dict] = []
    if resuming:
        if old.frames_total != n_out:
            raise InputError(f"{out}: cannot resume, the interrupted job has {old.frames_total} output frames "
                             f"and this run {n_out}")
        state.update(segment_frames=old.data["segment_frames"], created=old.data.get("created", time.time()))
        parts = valid_parts(folder, old.parts)
        if parts and parts[-1]["end"] >= n_out:
            parts.pop()  # all written, the join was not: redo the last part (the run needs frames to write)
        log.info("%s: resuming at frame %d of %d", out, parts[-1]["end"] if parts else 0, n_out)
    elif old is not None:
        log.warning("%s: starting anew; the interrupted job for this output is discarded (--resume continues it)",
                    out)
    if folder.exists():
        keep = {p["name"] for p in parts} | {STATE}
        for entry in folder.iterdir():  # parts not trusted, and partial parts (temp names) of a dead run
            if entry.name not in keep:
                entry.unlink(missing_ok=True) if entry.is_file() else shutil.rmtree(entry, ignore_errors=True)
    state["parts"] = parts
    return RunJob(folder, state, parts[-1]["end"] if parts else 0)


def _writable(folder: Path) -> bool:
    """``folder`` exists writable, or its nearest existing parent is writable (nothing is created)."""
    for path in (folder, *folder.parents):
        if path.exists():
            return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
    return False


def valid_parts(folder: Path, parts: list[dict]) -> list[dict]:
    """The recorded parts that are intact (size, content digest and frame count as recorded), up to
    the first that is not: it and those after it are written again."""
    good = []
    for part in parts:
        path = folder / part["name"]
        why = _part_problem(path, part)
        if why:
            log.warning("%s: %s; this segment (frames %d-%d) and the rest are written again", path, why,
                        part["start"], part["end"] - 1)
            break
        good.append(part)
    return good


def _part_problem(path: Path, part: dict) -> str | None:
    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    if size <= 0 or size != part["size"]:
        return f"{size} bytes where {part['size']} were written"
    if file_digest(path) != part["digest"]:
        return "its content changed"
    try:
        frames = _packet_count(path)
    except Exception as exc:  # noqa: BLE001 - any demux failure: the part is not trusted
        return f"cannot be read ({exc})"
    if frames != part["end"] - part["start"]:
        return f"{frames} frames where {part['end'] - part['start']} were written"
    return None


def _packet_count(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


class PartEncoder:
    """The encode stage of a resumable run: a new part file at each segment boundary (video only),
    the state saved after each; ``close`` joins the parts into the output with the audio."""

    def __init__(self, job: RunJob, width: int, height: int, rate, track, settings) -> None:
        from .batch.segments import part_suffix

        self.job, self.size, self.rate, self.track, self.settings = job, (width, height), rate, track, settings
        self.suffix = part_suffix(Path(job.state["out"]), settings.lossless)
        self.writer = None  # the part being written (the last one once closed): its size notes
        self._open = False
        self._start = self.next = job.first
        self.outputs: dict[str, Path] = {}  # no extra outputs: such runs are not resumable (``not_resumable``)
        job.save()  # the job exists from here on: the parts kept, none in progress

    def write(self, item) -> None:
        from .video import VideoWriter

        if item.index != self.next:
            raise RuntimeError(f"frame {item.index} arrived where {self.next} was expected")
        if not self._open:
            k = item.index // self.job.state["segment_frames"]
            self.writer = VideoWriter(self.job.folder / f"part{k:04d}{self.suffix}", *self.size, self.rate, None,
                                      self.settings)
            self._open, self._start = True, item.index
        self.writer.write(item.frame)
        self.next += 1
        if self.next % self.job.state["segment_frames"] == 0 or self.next == self.job.frames:
            self._finish_part()

    def _finish_part(self) -> None:
        self.writer.close()
        self._open = False
        path = self.writer.path
        self.job.state["parts"].append({"name": path.name, "start": self._start, "end": self.next,
                                        "size": path.stat().st_size, "digest": file_digest(path)})
        self.job.save()
        log.info("%s: saved frames %d-%d of %d (%s)", self.job.state["out"], self._start, self.next - 1,
                 self.job.frames, path)

    def close(self) -> None:
        """The last part, then the join into the output (atomic) and the job folder removed."""
        from .video import join_videos

        if self._open:
            self._finish_part()
        parts = [self.job.folder / p["name"] for p in self.job.state["parts"]]
        frames = join_videos(parts, Path(self.job.state["out"]), self.track, self.settings)
        if frames != self.job.frames:
            raise Wav2LipUHQError(f"{self.job.state['out']}: joined {frames} frames of {self.job.frames}")
        self.job.remove()

    def abort(self) -> None:
        """The part in progress is dropped; the finished ones stay for a resume, except after an
        error of the input or settings (resuming would fail the same way)."""
        if self._open:
            self.writer.abort()
            self._open = False
        exc = sys.exc_info()[1]  # called from the run's ``except`` block
        if isinstance(exc, Wav2LipUHQError) and not isinstance(exc, Cancelled):
            self.job.remove()

