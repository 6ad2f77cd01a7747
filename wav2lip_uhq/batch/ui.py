"""The UI's batch section: uploaded faces and audios (a folder's files, or several), paired by name
or number, or named by an uploaded manifest; every row takes the form's settings, its own columns
win. Rows run as jobs of the UI's runner (``host.run_rows``), one after another, into
``<results>/batch/``; a finished row is skipped when the same batch is run again.

Only uploads are read: a manifest names uploaded files, never paths on the server. gradio is
imported when a handler runs.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..cache import default_cache_dir
from .manifest import TEXT_KEYS, ManifestError, read_manifest, rows_from_folders

BATCH_FOLDER = "batch"


def upload_name(value: Any) -> str | None:
    """The name a file had on the user's machine (gradio 3 renames uploads; ``orig_name`` keeps it)."""
    from ..files import file_path

    orig = value.get("orig_name") if isinstance(value, dict) else getattr(value, "orig_name", None)
    path = file_path(value)
    return Path(str(orig)).name if orig else (path.name if path else None)


def stage_uploads(files: Sequence[Any] | None, folder: Path) -> Path:
    """Links to the uploaded files under their own names in ``folder`` (what the pairing reads)."""
    from ..files import file_path

    folder.mkdir(parents=True)
    for value in files or ():
        path, name = file_path(value), upload_name(value)
        if path is None or not name:
            continue
        target = folder / name
        if target.exists():
            raise ValueError(f"two uploaded files are named {name}")
        try:
            target.symlink_to(path.resolve())
        except OSError:
            shutil.copyfile(path, target)
    return folder


class BatchHandlers:
    """The batch section's buttons, over the UI's ``Handlers`` (its values and runner)."""

    def __init__(self, handlers) -> None:
        self.h = handlers
        self.runner = handlers.runner
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def out_dir(self) -> Path:
        return self.runner.results_dir / BATCH_FOLDER

    def rows(self, args: Sequence[Any], files, manifest, folder: Path):
        """The validated rows: the form's settings for every row (the single run's text box aside)."""
        from ..ui.values import file_path, option_values_from_ui

        base = {k: v for k, v in option_values_from_ui(self.h.values(args)).items() if k not in TEXT_KEYS}
        stage_uploads(files, folder)
        manifest_path = file_path(manifest)
        if manifest_path is not None:
            name = upload_name(manifest)
            return read_manifest(manifest_path, base, self.out_dir, root=folder, confined=True, name=name), name
        return rows_from_folders(folder, folder, base, self.out_dir), f"{len(files or ())} uploaded files"

    def run_batch(self, files, manifest, *args) -> Iterator[tuple[str, Any]]:
        """(progress text, summary) while the batch runs, then its summary."""
        import gradio as gr

        if self.thread is not None and self.thread.is_alive():
            raise gr.Error("a batch is running; wait for it or press Interrupt")
        if not files and manifest is None:
            raise gr.Error("Add faces and audios (and optionally a manifest naming them).")
        folder = Path(self.runner.cache_dir or default_cache_dir()) / "batch-uploads" / uuid.uuid4().hex[:12]
        try:
            rows, source = self.rows(args, files, manifest, folder)
            need_sd = [r.where for r in rows if r.config.mode == "uhq" and r.config.refine.checkpoint is None]
            if need_sd and self.h.need_sd_checkpoint:
                raise ValueError(f"{need_sd[0]}: uhq mode needs a Stable Diffusion 1.5 checkpoint")
        except (ManifestError, ValueError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise gr.Error(str(exc)) from None
        yield from self._run(rows, source, folder)

    def _run(self, rows, source: str, folder: Path) -> Iterator[tuple[str, Any]]:
        from .host import run_rows

        state: dict[str, Any] = {"progress": BatchText(len(rows)), "summary": None, "error": None}
        self.stop.clear()

        def work():
            try:
                state["summary"] = run_rows(self.runner, rows, self.out_dir / "batch_summary.json", self.stop,
                                            progress=state["progress"], source=source)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                state["error"] = exc
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        self.thread = threading.Thread(target=work, name="wav2lip-uhq-ui-batch", daemon=True)
        self.thread.start()
        while self.thread.is_alive():
            self.thread.join(0.5)
            yield state["progress"].text(), None
        if state["error"] is not None:
            import gradio as gr

            from ..ui.handlers import message

            raise gr.Error(message(state["error"]))
        summary = state["summary"].to_json()
        yield state["progress"].text(final=True), summary

    def stop_batch(self) -> str:
        """Stop the batch: the running row is interrupted, the rest are not started."""
        if self.thread is None or not self.thread.is_alive():
            return "no batch is running"
        self.stop.set()
        self.runner.cancel()
        return "interrupting the batch..."


class BatchText:
    """A ``BatchRunner`` progress callback that keeps a one-line description for the UI."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.counts = {"done": 0, "skipped": 0, "failed": 0, "cancelled": 0}
        self.current: tuple[int, int, int] | None = None  # row, frame, frames

    def __call__(self, event: tuple) -> None:
        if event[0] == "progress":
            self.current = (event[1], event[2], event[3])
        elif event[0] == "finished":
            self.counts[event[1].status] = self.counts.get(event[1].status, 0) + 1
            self.current = None

    def text(self, final: bool = False) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in self.counts.items() if n) or "starting"
        if final:
            return f"batch finished: {counts} of {self.rows} rows"
        if self.current is None:
            return f"batch: {counts} of {self.rows} rows"
        row, frame, frames = self.current
        return f"batch: row {row + 1} of {self.rows}, frame {frame}/{frames}; {counts}"
