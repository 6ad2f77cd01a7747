"""The job runner behind the UI (WebUI tab and standalone app): pure Python, no gradio.

One ``LipSyncPipeline`` (models stay loaded between jobs), one job at a time (a lock), the
latest progress report of the running job, and a cancel flag the pipeline checks between
batches. torch is imported only when the first job or preview starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cache import default_cache_dir
from .config import RunConfig
from .errors import Cancelled
from .files import write_atomic
from .outputs import is_extra_output

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")


class RunnerBusy(RuntimeError):
    """Another job or preview is running."""


@dataclass
class Job:
    """One run started by ``UIRunner.start``; ``done`` is set when it has finished either way."""

    config: RunConfig
    cancel_event: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    stage: str = "starting"
    frames_done: int = 0
    frames_total: int = 0
    started: float = field(default_factory=time.monotonic)
    result: Any = None  # RunResult on success
    error: BaseException | None = None
    settings_path: Path | None = None
    speech_path: Path | None = None  # the spoken audio saved beside the result (text to speech)
    progress_log: list[tuple[str, int, int]] = field(default_factory=list)
    on_progress: Callable[[str, int, int], None] | None = None  # a host's progress display

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, Cancelled)

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.frames_done, self.frames_total = stage, int(done), int(total)
        if not self.progress_log or self.progress_log[-1][0] != stage or done >= total:
            self.progress_log.append((stage, int(done), int(total)))
        if self.on_progress is not None:
            self.on_progress(stage, int(done), int(total))

    def progress_text(self) -> str:
        elapsed = time.monotonic() - self.started
        if self.done.is_set():
            if self.error is None:
                r = self.result
                text = f"done: {r.output.name}, {r.frames} frames at {r.fps:g} fps in {elapsed:.1f} s"
                if r.frames_without_face:
                    text += f"; {r.frames_without_face} frames without a face left unchanged"
                return text
            if self.cancelled:
                return "interrupted: no output written" + self._resume_hint()
            return f"error: {self.error}"
        if self.cancel_event.is_set():
            return f"interrupting... ({self.stage})"
        if self.frames_total > 1:
            return f"{self.stage}: frame {self.frames_done}/{self.frames_total} ({elapsed:.0f} s)"
        return f"{self.stage}... ({elapsed:.0f} s)"


    def _resume_hint(self) -> str:
        """After an interrupt: whether Resume can continue it, and from where, or why not."""
        from .resume import interrupted_jobs, not_resumable

        why = not_resumable(self.config)
        if why:
            return f"; it cannot be resumed: {why}"
        jobs = interrupted_jobs(self.config.cache_dir)
        if not jobs or not jobs[0].frames_done:
            return (f"; nothing to resume yet: no segment ({self.config.resume_every:g} s of video) was "
                    "finished")
        return f"; Resume continues it from frame {jobs[0].frames_done} of {jobs[0].frames_total}"


def settings_path_for(output: Path) -> Path:
    """Where a result's settings are saved: ``<output>.json`` (``face_speech.mp4.json``)."""
    return Path(f"{output}.json")


def shown_path(path: str | Path) -> str:
    """A path as the user knows it: an upload's copy in gradio's (or our API's) temporary folder
    is shown by its file name, which gradio keeps from the user's file."""
    import tempfile

    p = Path(path)
    temp_roots = [Path(tempfile.gettempdir()).resolve()]
    if os.environ.get("GRADIO_TEMP_DIR"):
        temp_roots.append(Path(os.environ["GRADIO_TEMP_DIR"]).resolve())
    try:
        real = p.resolve()
    except OSError:
        return str(p)
    if any(real.is_relative_to(root) for root in temp_roots) or "api-uploads" in real.parts:
        return p.name
    return str(p)


def write_settings(config: RunConfig, output: Path) -> Path:
    """Save ``config.to_dict()`` (with the real output path) next to ``output``, atomically;
    uploaded inputs by their file names, not their temporary copies' paths."""
    data = config.to_dict()
    data["out"] = str(output)
    data["face"], data["audio"] = shown_path(config.face), shown_path(config.audio)
    return write_atomic(settings_path_for(output), json.dumps(data, indent=2, sort_keys=True, default=str))


class UIRunner:
    """Runs lip-sync jobs for a UI, one at a time.

    ``results_dir``, ``models_dir``, ``cache_dir`` and ``device`` are the host's settings; the UI
    merges ``base_values()`` under the user's values before building a ``RunConfig``.
    """

    def __init__(
        self,
        results_dir: str | Path = "results",
        models_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        device: str = "auto",
        pipeline: Any = None,
        refiner_factory: Callable[[Any, str], Any] | None = None,
        job_context: Callable[[Job], AbstractContextManager[Callable[[], bool] | None]] | None = None,
    ) -> None:
        """``job_context(job)`` wraps the model work of every job and preview; a host uses it to
        hold its GPU lock and report progress (the WebUI: ``queue_lock`` + ``shared.state``). What
        it yields, if callable, is polled as a second cancel flag (the host's Interrupt button)."""
        self.results_dir = Path(results_dir)
        self.models_dir = Path(models_dir) if models_dir else None
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.device = device
        self._pipeline = pipeline
        self.refiner_factory = refiner_factory
        self.job_context = job_context
        self._lock = threading.Lock()
        self.job: Job | None = None  # the current or last job

    # -- state ---------------------------------------------------------------------------------
    def base_values(self) -> dict:
        return {
            "results_dir": self.results_dir,
            "models_dir": self.models_dir,
            "cache_dir": self.cache_dir,
            "device": self.device,
        }

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @property
    def pipeline(self):
        if self._pipeline is None:
            from .pipeline import LipSyncPipeline  # imports torch

            self._pipeline = LipSyncPipeline(self.device, refiner_factory=self.refiner_factory)
        return self._pipeline

    def progress_text(self) -> str:
        return self.job.progress_text() if self.job is not None else "idle"

    def release_models(self) -> None:
        """Drop the loaded models (a host's memory policy, e.g. the WebUI's model unload); the next
        job or preview loads them again, a running one keeps those it holds until it ends."""
        self._pipeline = None

    def cancel(self) -> bool:
        """Ask the running job to stop (checked between batches). False when nothing runs."""
        job = self.job
        if job is None or job.done.is_set():
            return False
        job.cancel_event.set()
        return True

    # -- jobs ----------------------------------------------------------------------------------
    def _acquire(self, wait: bool = False) -> None:
        if not self._lock.acquire(blocking=wait):
            raise RunnerBusy("another lip-sync job is running; wait for it or press Interrupt")

    @contextlib.contextmanager
    def _host(self, job: Job):
        """The host's context around model work; yields the combined cancel check."""
        with self.job_context(job) if self.job_context else contextlib.nullcontext() as host_cancel:
            if callable(host_cancel):
                yield lambda: job.cancel_event.is_set() or bool(host_cancel())
            else:
                yield job.cancel_event.is_set

    def start(self, config: RunConfig, wait: bool = False) -> Job:
        """Start ``config`` in a background thread. A running job makes this raise ``RunnerBusy``,
        or, with ``wait``, block until it has finished (API jobs queue up behind UI jobs)."""
        self._acquire(wait)
        job = Job(config)
        self.job = job

        def work():
            try:
                if job.cancel_event.is_set():
                    raise Cancelled("cancelled before the start")
                with self._host(job) as cancel:
                    if cancel():
                        raise Cancelled("cancelled before the start")
                    job.result = self.pipeline.run(config, progress=job.progress, cancel=cancel)
                try:
                    job.settings_path = write_settings(config, job.result.output)
                except OSError as exc:  # the video is there; the settings are a bonus
                    log.warning("could not save the settings next to %s: %s", job.result.output, exc)
                job.speech_path = save_speech(config, job.result.output)
            except BaseException as exc:  # reported through the job, shown by the UI
                job.error = exc
                if not isinstance(exc, Exception):
                    raise
            finally:
                job.done.set()
                self._lock.release()

        if config.out is None:
            self.results_dir.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=work, name="wav2lip-uhq-job", daemon=True).start()
        return job

    def run(self, config: RunConfig, timeout: float | None = None) -> Job:
        """Run ``config`` and wait; raises the job's error (``Cancelled`` when interrupted)."""
        job = self.start(config)
        if not job.done.wait(timeout):
            raise TimeoutError("the job did not finish in time")
        if job.error is not None:
            raise job.error
        return job

    def interrupted_job(self):
        """The most recent interrupted job in this runner's cache (``resume.JobState``), or None."""
        from .resume import interrupted_jobs

        jobs = interrupted_jobs(self.cache_dir)
        return jobs[0] if jobs else None

    def resume_config(self) -> RunConfig:
        """The config that resumes the most recent interrupted job: its own settings and inputs."""
        from .errors import InputError
        from .resume import config_of

        job = self.interrupted_job()
        if job is None:
            raise InputError("there is no interrupted job to resume")
        return config_of(job, self.base_values())

    def speak(self, values: Mapping[str, Any], progress: Callable[[int, int], None] | None = None) -> Path | None:
        """The WAV of the values' text to speech (in the cache), or None when they have no text.
        Not under the job lock: speech runs on the CPU beside a lip-sync job."""
        from .speech import options_from_values, speak_options

        return speak_options(options_from_values(values), cache_dir=self.cache_dir, models_dir=self.models_dir,
                             allow_download=bool(values.get("allow_download", True)), progress=progress)

    def preview(self, config: RunConfig, frame_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(result, overlay) of one frame, RGB uint8."""
        self._acquire()
        try:
            with self._host(Job(config)):
                result, overlay = self.pipeline.preview(config, frame_index)
        finally:
            self._lock.release()
        return np.ascontiguousarray(result[:, :, ::-1]), np.ascontiguousarray(overlay[:, :, ::-1])

    def face_boxes(self, config: RunConfig, frame_index: int = 0) -> list[tuple[int, int, int, int]]:
        """The faces of the preview's frame, left to right (for a click on the preview)."""
        self._acquire()
        try:
            with self._host(Job(config)):
                return self.pipeline.face_boxes(config, frame_index)
        finally:
            self._lock.release()

    def recent_results(self, limit: int = 20) -> list[Path]:
        """Result videos in the results folder, newest first."""
        if not self.results_dir.is_dir():
            return []
        files = [
            p
            for p in self.results_dir.iterdir()
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")
            and not is_extra_output(p)  # talk.raw.mp4 belongs to talk.mp4
        ]
        files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        return files[:limit]

    def recent_gallery(self, limit: int = 12) -> list[tuple[str, str, str]]:
        """(thumbnail, caption, video) for the newest results that have a thumbnail."""
        items = []
        for video in self.recent_results(limit):
            thumb = thumbnail(video, self.cache_dir)
            if thumb is not None:
                items.append((str(thumb), video.name, str(video)))
        return items


def thumbnail(video: Path, cache_dir: Path | None, width: int = 256) -> Path | None:
    """A JPEG of ``video``'s first frame for the recent-results gallery, cached under
    ``cache_dir/thumbnails`` by path, size and modification time (results stay untouched)."""
    import hashlib

    try:
        st = video.stat()
        key = hashlib.sha1(f"{video.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
        folder = Path(cache_dir or default_cache_dir()) / "thumbnails"
        path = folder / f"{key}.jpg"
        if path.is_file():
            return path
        import cv2

        from .video import iter_frames

        frame = next(iter_frames(video, limit=1))
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
        folder.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            return None
        return write_atomic(path, data.tobytes())
    except Exception as exc:  # noqa: BLE001 - a gallery picture is never worth failing for
        log.warning("no thumbnail for %s: %s", video, exc)
        return None


def save_speech(config: RunConfig, output: Path) -> Path | None:
    """A run from text: its spoken audio saved beside the result (``<result>.wav``); never fatal."""
    if not (config.speech.text.strip() or config.speech.text_file):
        return None
    from .speech import save_beside

    try:
        return save_beside(config.audio, output)
    except OSError as exc:  # the video is there; the audio is a bonus
        log.warning("could not save the spoken audio next to %s: %s", output, exc)
        return None


def load_settings(output: str | Path) -> dict | None:
    """The settings saved next to a result, or None."""
    path = settings_path_for(Path(output))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


__all__ = [
    "Job",
    "RunnerBusy",
    "UIRunner",
    "load_settings",
    "save_speech",
    "settings_path_for",
    "thumbnail",
    "write_settings",
]
