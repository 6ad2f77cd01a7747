"""The UI's event handlers: plain methods over a ``UIRunner``; gradio is imported when they run."""

from __future__ import annotations

import logging

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import Wav2LipUHQError
from ..ui_runner import RunnerBusy, UIRunner, load_settings
from .values import (
    FACE_PICK,
    PREVIEW_FRAME,
    SPEAKER_ROWS,
    UI_KEYS,
    UIInputError,
    checkpoint_choices,
    config_from_ui,
    face_at,
    file_path,
    option_values_from_ui,
    visibility_for_mode,
)

log = logging.getLogger(__name__)


def save_face_image(image: Any, cache_dir: Path | None) -> Path:
    """A PIL image or RGB array as ``<cache>/faces/<hash>.png`` (the same picture, the same file)."""
    import hashlib

    import numpy as np

    from ..cache import default_cache_dir
    from ..files import write_atomic

    rgb = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    rgb = np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)
    digest = hashlib.sha256(rgb.tobytes() + repr(rgb.shape).encode()).hexdigest()[:24]
    path = Path(cache_dir or default_cache_dir()) / "faces" / f"face_{digest}.png"
    if not path.is_file():
        import cv2

        ok, data = cv2.imencode(".png", rgb[:, :, ::-1])
        if not ok:
            raise ValueError("the picture cannot be saved as PNG")
        write_atomic(path, data.tobytes(), parents=True)
    return path


def message(exc: BaseException) -> str:
    """One line for the user: our errors as they are, anything else with its type."""
    from ..errors import Wav2LipUHQError

    if isinstance(exc, (Wav2LipUHQError, ValueError)):
        return str(exc)
    if isinstance(exc, OSError):  # disk full, a vanished file: the file and what went wrong
        return f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc.strerror or exc)
    return f"{type(exc).__name__}: {exc}"


def summary(settings: dict | None, progress: str, notes: Sequence[str] = (), extras: dict | None = None) -> str:
    """The result summary shown above the (folded) settings: one line, the extra outputs, any notes."""
    line = progress if not settings else f"{progress} — mode {settings.get('mode', '?')}"
    also = [f"also: {kind}: {Path(path).name}{'/ (a folder of PNGs)' if Path(path).is_dir() else ''}"
            for kind, path in (extras or {}).items()]
    return "\n".join([line, *also, *(f"note: {n}" for n in notes)])


def extra_files(extras: dict | None) -> list[str]:
    """The extra outputs the UI offers for download: the files (a PNG sequence's folder is named
    in the summary)."""
    return [str(p) for p in (extras or {}).values() if Path(p).is_file()]


def mode_change(mode: str) -> tuple[dict, dict, dict]:
    """The mode dropdown's handler: visibility updates for the mask, restoration and refinement groups."""
    import gradio as gr

    vis = visibility_for_mode(mode)
    return (
        gr.update(visible=vis["mask"]),
        gr.update(visible=vis["restore"]),
        gr.update(visible=vis["refine"]),
    )


class Handlers:
    """What the buttons do. ``args`` are the component values in ``UI_KEYS`` order."""

    def __init__(self, runner: UIRunner, need_sd_checkpoint: bool = True) -> None:
        self.runner = runner
        self.need_sd_checkpoint = need_sd_checkpoint
        self.gallery_videos: list[str] = []  # the videos behind the gallery's pictures, in order

    def values(self, args: Sequence[Any]) -> dict:
        return {**dict(zip(UI_KEYS, args)), **self.runner.base_values()}

    def config(self, args: Sequence[Any]):
        """The run's config; ``UIInputError``/``Wav2LipUHQError`` say what is wrong."""
        values = self.values(args)
        spoken = self.runner.speak(values)  # text to speech: the text replaces the audio
        if spoken is not None:
            values["audio"] = str(spoken)
        return config_from_ui(values, need_sd_checkpoint=self.need_sd_checkpoint)

    # -- text to speech and the face picture -----------------------------------------------------
    def speak(self, args: Sequence[Any], progress: Any = None) -> str:
        """The Speak button: the text's audio for the audio player (played before any lip sync)."""
        import gradio as gr

        def download(done: int, total: int) -> None:
            if progress is not None and total:
                progress(done / total, desc=f"downloading the voice: {done >> 20} of {total >> 20} MiB")

        try:
            path = self.runner.speak(self.values(args), download)
        except (ValueError, Wav2LipUHQError) as exc:
            raise gr.Error(str(exc)) from None
        if path is None:
            raise gr.Error("Type the text to speak first.")
        return str(path)

    def engine_change(self, engine: str, voice: str):
        """A new engine: its languages, and the voices of the current voice's language (or the default's)."""
        import gradio as gr

        from .. import speech

        folder = self.runner.models_dir
        if voice not in [v for _, v in speech.voices_for(engine, None, folder)]:
            voice = speech.default_voice(engine)
        lang = speech.language_of(engine, voice, folder)
        return (gr.update(choices=speech.languages(engine, folder), value=lang),
                gr.update(choices=[v for _, v in speech.voices_for(engine, lang, folder)], value=voice))

    def language_change(self, engine: str, language: str, voice: str):
        import gradio as gr

        from .. import speech

        ids = [v for _, v in speech.voices_for(engine, language, self.runner.models_dir)]
        return gr.update(choices=ids, value=voice if voice in ids else (ids[0] if ids else None))

    def face_from_image(self, image):
        """A face given as a picture (dropped, pasted, from the webcam or sent from another tab):
        saved as a PNG in the cache (named by its pixels) and handed to the face input."""
        import gradio as gr

        if image is None:
            return gr.update()
        return str(save_face_image(image, self.runner.cache_dir))

    def recent_choices(self) -> list[str]:
        return [str(p) for p in self.runner.recent_results()]

    def gallery_items(self) -> list[tuple[str, str]]:
        items = self.runner.recent_gallery()
        self.gallery_videos[:] = [video for _, _, video in items]
        return [(thumb, caption) for thumb, caption, _ in items]

    def refresh_checkpoints(self, current):
        import gradio as gr

        choices = checkpoint_choices(self.runner.models_dir)
        return gr.update(choices=choices, value=current if current in choices else (choices[0] if choices else None))

    def preview(self, *args):
        """(result, overlay, status): a failure is one line in the status, not an error on every
        output (gradio 4 marks each output of a failed event), and one line in the console."""
        import gradio as gr

        from ..options import OptionError, coerce

        try:
            config = self.config(args)
            frame = coerce(PREVIEW_FRAME, self.values(args).get("preview_frame", 0))
            result, overlay = self.runner.preview(config, frame)
        except Exception as exc:  # noqa: BLE001 - any failure becomes one message
            text = message(exc) if not isinstance(exc, (OptionError, RunnerBusy)) else str(exc)
            log.warning("wav2lip-uhq preview: %s", text)
            log.debug("wav2lip-uhq preview", exc_info=True)
            return gr.update(), gr.update(), f"error: {text}"
        return result, overlay, f"preview of output frame {frame}"

    def pick_face(self, evt: Any, args: Sequence[Any]) -> list:
        """A click on the preview: the face under it becomes the face index of the speaker the
        "click picks" choice names. Returns an update per face-index input, then the status."""
        import gradio as gr

        from ..options import coerce, config_from_values

        keys = ["face_index", *(row[1] for row in SPEAKER_ROWS)]
        updates: list = [gr.update() for _ in keys]
        values = self.values(args)
        target = max(1, min(len(keys), int(values.get(FACE_PICK) or 1)))
        try:
            x, y = (float(v) for v in evt.index)
            face = file_path(values.get("face"))
            if face is None or not face.is_file():
                raise UIInputError("Add a face video or image, then Preview, then click a face.")
            config = config_from_values(option_values_from_ui(values), face, face)
            frame = coerce(PREVIEW_FRAME, values.get("preview_frame", 0))
            boxes = self.runner.face_boxes(config, frame)  # the audio is not read to find faces
        except Exception as exc:  # noqa: BLE001 - any failure becomes one message
            return [*updates, f"error: {message(exc)}"]
        index = face_at(boxes, x, y)
        if index is None:
            return [*updates, f"no face at ({x:.0f}, {y:.0f}): {len(boxes)} face(s) in frame {frame}"]
        updates[target - 1] = gr.update(value=index)
        return [*updates, f"speaker {target}: face index {index} (of {len(boxes)}, counted from the left)"]

    def run(self, *args) -> Iterator[tuple]:
        """Progress while the job runs, then (status, video, summary, settings, recent, gallery).
        A failure ends in the status (and one console line), never as an error on every output."""
        yield from self._start_and_follow(lambda: self.config(args))

    def resume(self) -> Iterator[tuple]:
        """The Resume button: the last interrupted job with its saved settings, shown as Run shows a run."""
        yield from self._start_and_follow(self.runner.resume_config)

    def resume_state(self) -> tuple[dict, dict]:
        """The Resume button and what it would resume, shown only while there is an interrupted job."""
        import gradio as gr

        running = self.runner.job is not None and not self.runner.job.done.is_set()
        job = None if running else self.runner.interrupted_job()  # not while one is still stopping
        text = job.describe() if job is not None else ""
        return gr.update(visible=job is not None), gr.update(value=text, visible=job is not None)

    def _start_and_follow(self, make_config) -> Iterator[tuple]:
        import gradio as gr

        unchanged = (gr.update(),) * 6
        try:
            job = self.runner.start(make_config())
        except (UIInputError, Wav2LipUHQError, RunnerBusy, ValueError) as exc:
            log.warning("wav2lip-uhq: %s", exc)
            yield (f"error: {exc}", *unchanged)
            return
        while not job.done.wait(0.5):
            yield (job.progress_text(), *unchanged)
        if job.error is not None and not job.cancelled:
            log.warning("wav2lip-uhq: %s", message(job.error))
            yield (f"error: {message(job.error)}", *unchanged)
            return
        if job.cancelled:
            yield (job.progress_text(), *unchanged)
            return
        out = str(job.result.output)
        settings = load_settings(out)
        extras = getattr(job.result, "extra_outputs", {})
        yield (
            job.progress_text(),
            out,
            summary(settings, job.progress_text(), getattr(job.result, "notes", ()), extras),
            settings,
            gr.update(choices=self.recent_choices(), value=out),
            gr.update(value=self.gallery_items()),
            gr.update(value=extra_files(extras) or None, visible=bool(extras)),  # shown only when there are some
        )

    def interrupt(self) -> str:
        return "interrupting..." if self.runner.cancel() else self.runner.progress_text()

    def refresh_recent(self, current):
        import gradio as gr

        choices = self.recent_choices()
        return gr.update(choices=choices, value=current if current in choices else None)

    def refresh_gallery(self):
        import gradio as gr

        return gr.update(value=self.gallery_items())

    def gallery_select(self, evt):
        import gradio as gr

        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        if not 0 <= index < len(self.gallery_videos) or not Path(self.gallery_videos[index]).is_file():
            return gr.update(), gr.update(), gr.update()
        path = self.gallery_videos[index]
        return path, load_settings(path), gr.update(choices=self.recent_choices(), value=path)

    def recent(self, path):
        import gradio as gr

        if not path:
            return gr.update(), gr.update()
        return path, load_settings(path)
