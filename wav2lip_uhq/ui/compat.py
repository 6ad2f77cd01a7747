"""Shims for the gradio versions the hosts pin: 3.41.2 (A1111), 4.40 (Forge) and current gradio."""

from __future__ import annotations

from collections.abc import Mapping


def gradio_major() -> int:
    import gradio as gr

    try:
        return int(str(gr.__version__).split(".")[0])
    except ValueError:
        return 0


def pass_audio_file_through(component) -> None:
    """Hand the uploaded audio file to the job as it is, on gradio 3.x and 4.x.

    Their ``gr.Audio(type="filepath")`` decodes every upload with pydub and writes a new WAV:
    without an ``ffmpeg``/``ffprobe`` on PATH (most WebUI installs) an mp3 or m4a fails in
    gradio before the job starts. Our audio loader reads any format through PyAV, so it only
    needs the uploaded file. gradio 5+ already passes the file through (``format=None``).
    A clip trimmed in gradio 3's editor (crop_min/crop_max) still goes through gradio.
    """
    if gradio_major() >= 5:
        return
    original = component.preprocess

    def preprocess(payload):
        if payload is None:
            return None
        if isinstance(payload, Mapping):  # gradio 3.x: {"name", "data", "is_file", "crop_min", "crop_max"}
            name, data = payload.get("name"), payload.get("data")
            if payload.get("crop_min", 0) not in (0, None) or payload.get("crop_max", 100) not in (100, None):
                return original(payload)
            if payload.get("is_file"):
                if name and not str(name).startswith(("http:", "https:")):
                    return component.make_temp_copy_if_needed(name)
            elif isinstance(data, str) and data.startswith("data:"):  # an upload comes as a data URL
                return component.base64_to_temp_file_if_needed(data, name)
            return original(payload)
        path = getattr(payload, "path", None)  # gradio 4.x: FileData, already in gradio's cache
        return str(path) if path else original(payload)

    component.preprocess = preprocess


def image_input_sources() -> dict:
    """``gr.Image`` keywords for a face picture: drop/upload and the webcam where the version can have
    both (4.x+: ``sources``); gradio 3.x takes one ``source``, upload (drag and drop) there."""
    if gradio_major() >= 4:
        return {"sources": ["upload", "webcam", "clipboard"]}
    return {"source": "upload"}
