"""The one gradio UI, shared by the WebUI tab and the standalone app (``wav2lip-uhq app``).

``build_ui(runner)`` returns a ``gr.Blocks``. It uses only what gradio 3.41.2 (A1111), 4.40
(Forge) and current gradio have in common: no ``.style()``, no ``source``/``sources``, updates
through ``gr.update(...)``, every elem_id prefixed ``wav2lip_uhq_``. gradio is imported inside
``build_ui`` and torch only when a job starts, so importing this module is cheap.

The mapping from the UI's values to a ``RunConfig`` is the pure function ``config_from_ui``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import MODES, CompositeOptions, FaceOptions, FrameOptions, RunConfig
from .refine.base import DEFAULT_NEGATIVE, DEFAULT_PROMPT, ControlSpec, RefineOptions
from .ui_runner import RunnerBusy, UIRunner, load_settings

PREFIX = "wav2lip_uhq_"
FACE_TYPES = [
    ".mp4",
    ".mov",
    ".mkv",
    ".avi",
    ".webm",
    ".m4v",
    ".gif",
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".bmp",
]
CONTROLNET_PREPROCESSORS = (
    "canny",
    "lineart",
    "tile",
    "mediapipe_face",
    "none",
)  # refine.control.PREPROCESSORS
SAMPLERS = ("dpm++_2m_karras", "dpm++_2m", "euler", "euler_a", "ddim", "unipc", "lcm", "turbo")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")

# Defaults of every UI value, by key (the keys of ``config_from_ui``'s dict).
DEFAULTS: dict[str, Any] = {
    "face": None,
    "audio": None,
    "mode": "improved",
    "checkpoint": "wav2lip_gan",
    "allow_download": True,
    "detector": "s3fd",
    "box": "",
    "pad_top": 0,
    "pad_bottom": 10,
    "pad_left": 0,
    "pad_right": 0,
    "smoothing": "centered",
    "face_index": -1,  # -1: the largest face
    "mask_region": "lower_face",
    "mask_dilate": 0.0,
    "mask_feather": 0.12,
    "colour_match": True,
    "blend": "alpha",
    "sharpen": 0.0,
    "regrain": False,
    "aligned": False,
    "silence": "off",
    "restorer": "",
    "restore_strength": 0.7,
    "fidelity": 0.7,
    "upscaler": "",
    "sd_checkpoint": "",
    "prompt": DEFAULT_PROMPT,
    "negative_prompt": DEFAULT_NEGATIVE,
    "denoise": 0.3,
    "steps": 20,
    "cfg": 5.0,
    "sampler": "dpm++_2m_karras",
    "seed": 1234,
    "controlnet": "",
    "controlnet_preprocessor": "canny",
    "controlnet_weight": 1.0,
    "controlnet_start": 0.0,
    "controlnet_end": 1.0,
    "crf": 16,
    "batch_size": 32,
    "preview_frame": 0,
}
UI_KEYS = tuple(DEFAULTS)


class UIInputError(ValueError):
    """Bad or missing input, with a message for the user (shown as ``gr.Error``)."""


# -- pure helpers (no gradio) -------------------------------------------------------------------
def file_path(value: Any) -> Path | None:
    """A path from what gradio gives for a file: str, tempfile (3.x ``.name``), dict, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, os.PathLike)):
        pass
    elif isinstance(value, Mapping):  # gradio 4+ FileData as a dict
        value = value.get("path") or value.get("name")
    elif not isinstance(value, (list, tuple)):  # gradio 3.x tempfile wrapper: the path is .name
        value = getattr(value, "name", value)
    if isinstance(value, (list, tuple)):  # gr.Video output-style (video, subtitles)
        value = value[0] if value else None
    return Path(str(value)) if value else None


def _optional_path(value: Any) -> Path | None:
    p = file_path(value.strip() if isinstance(value, str) else value)
    return p.expanduser() if p is not None else None


def _int(values: Mapping, key: str, label: str, minimum: int | None = None) -> int:
    raw = values.get(key, DEFAULTS.get(key))
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise UIInputError(f"{label}: {raw!r} is not a number") from None
    if number != int(number):
        raise UIInputError(f"{label}: {raw!r} is not a whole number")
    if minimum is not None and number < minimum:
        raise UIInputError(f"{label} must be at least {minimum}")
    return int(number)


def _float(values: Mapping, key: str, label: str, lo: float | None = None, hi: float | None = None) -> float:
    raw = values.get(key, DEFAULTS.get(key))
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise UIInputError(f"{label}: {raw!r} is not a number") from None
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise UIInputError(f"{label} must be between {lo} and {hi} (got {number:g})")
    return number


def _choice(values: Mapping, key: str, label: str, choices: Sequence[str]) -> str:
    value = values.get(key, DEFAULTS.get(key))
    if value not in choices:
        raise UIInputError(f"{label}: {value!r} is not one of {', '.join(choices)}")
    return value


def parse_box(text: Any) -> tuple[int, int, int, int] | None:
    """``"TOP BOTTOM LEFT RIGHT"`` (spaces or commas) -> a box, ``""`` -> None (detect)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    parts = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    try:
        box = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise UIInputError(f"face box: {text!r} must be four whole numbers: top bottom left right") from None
    if len(box) != 4:
        raise UIInputError(f"face box: {text!r} must be four whole numbers: top bottom left right")
    top, bottom, left, right = box
    if not (0 <= top < bottom and 0 <= left < right):
        raise UIInputError(f"face box {box}: need 0 <= top < bottom and 0 <= left < right")
    return box  # type: ignore[return-value]


def resolve_checkpoint_choice(choice: Any, models_dir: Path | None) -> str | Path | None:
    """A known name stays a name (downloaded on first use); a file name is looked up in the models folder."""
    from .checkpoints import KNOWN_CHECKPOINTS
    from .checkpoints import models_dir as default_models_dir

    if choice is None or choice == "":
        return None
    choice = str(choice)
    if choice in KNOWN_CHECKPOINTS:
        return choice
    path = Path(choice).expanduser()
    if not path.is_absolute() and not path.exists():
        path = default_models_dir(models_dir) / choice
    return path


def checkpoint_choices(models_dir: Path | None = None) -> list[str]:
    """Generator checkpoints for the dropdown: the released names, then other files in the models folder."""
    from .checkpoints import KNOWN_CHECKPOINTS, list_checkpoints
    from .checkpoints import models_dir as default_models_dir

    names = [c.name for c, _, _ in list_checkpoints(models_dir) if c.kind == "wav2lip"]
    known_files = {c.filename for c in KNOWN_CHECKPOINTS.values()}
    folder = default_models_dir(models_dir)
    extra = []
    if folder.is_dir():
        extra = sorted(
            p.name
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES and p.name not in known_files
        )
    return names + extra


def visibility_for_mode(mode: str) -> dict[str, bool]:
    """Which option groups matter in ``mode``."""
    return {
        "mask": mode in ("improved", "enhanced", "uhq"),
        "restore": mode == "enhanced",
        "refine": mode == "uhq",
    }


def config_from_ui(values: Mapping[str, Any], *, need_sd_checkpoint: bool = True) -> RunConfig:
    """Map the UI's values (keys of ``DEFAULTS`` plus the runner's ``base_values()``) to a RunConfig.

    Raises ``UIInputError`` with a message for the user. ``need_sd_checkpoint=False`` when the
    host (the WebUI) supplies the Stable Diffusion model for ``uhq``.
    """
    face = file_path(values.get("face"))
    audio = file_path(values.get("audio"))
    if face is None and audio is None:
        raise UIInputError("Add a face video or image and an audio file.")
    if face is None:
        raise UIInputError("Add a face video or image.")
    if audio is None:
        raise UIInputError("Add an audio file (speech).")
    for what, path in (("face", face), ("audio", audio)):
        if not path.is_file():
            raise UIInputError(f"{what} file not found: {path}")

    mode = _choice(values, "mode", "mode", MODES)
    models_dir = _optional_path(values.get("models_dir"))
    pads = tuple(
        _int(values, f"pad_{side}", f"{side} padding") for side in ("top", "bottom", "left", "right")
    )
    face_index = _int(values, "face_index", "face index", minimum=-1)

    faces = FaceOptions(
        detector=_choice(values, "detector", "detector", ("s3fd", "dlib")),
        box=parse_box(values.get("box")),
        pads=pads,  # type: ignore[arg-type]
        smoothing=_choice(values, "smoothing", "smoothing", ("centered", "upstream", "none")),
        face_index=None if face_index < 0 else face_index,
    )
    composite = CompositeOptions(
        mask_region=_choice(values, "mask_region", "mask region", ("lower_face", "mouth")),
        mask_dilate=_float(values, "mask_dilate", "mask dilate", -0.5, 0.5),
        mask_feather=_float(values, "mask_feather", "mask feather", 0.0, 1.0),
        colour_match=bool(values.get("colour_match", DEFAULTS["colour_match"])),
        blend=_choice(values, "blend", "blend", ("alpha", "laplacian", "poisson")),
        sharpen=_float(values, "sharpen", "sharpen", 0.0, 5.0),
        regrain=bool(values.get("regrain", False)),
        aligned=bool(values.get("aligned", False)),
        silence=_choice(values, "silence", "silence", ("off", "close", "keep")),
        restorer=_optional_path(values.get("restorer")),
        restore_strength=_float(values, "restore_strength", "restore strength", 0.0, 1.0),
        fidelity=_float(values, "fidelity", "fidelity", 0.0, 1.0),
        upscaler=_optional_path(values.get("upscaler")),
    )

    sd_checkpoint = _optional_path(values.get("sd_checkpoint"))
    if mode == "uhq" and sd_checkpoint is None and need_sd_checkpoint:
        raise UIInputError("uhq mode needs a Stable Diffusion 1.5 checkpoint (file or diffusers folder).")
    nets: tuple[ControlSpec, ...] = ()
    control_model = str(values.get("controlnet") or "").strip()
    if control_model:
        start = _float(values, "controlnet_start", "ControlNet start", 0.0, 1.0)
        end = _float(values, "controlnet_end", "ControlNet end", 0.0, 1.0)
        if start >= end:
            raise UIInputError(f"ControlNet: guidance start ({start:g}) must be below its end ({end:g})")
        nets = (
            ControlSpec(
                control_model,
                _choice(
                    values, "controlnet_preprocessor", "ControlNet preprocessor", CONTROLNET_PREPROCESSORS
                ),
                _float(values, "controlnet_weight", "ControlNet weight", 0.0, 2.0),
                start,
                end,
            ),
        )
    prompt = str(values.get("prompt") or "").strip() or DEFAULT_PROMPT
    negative = values.get("negative_prompt")
    negative = DEFAULT_NEGATIVE if negative is None else str(negative)
    refine = RefineOptions(
        checkpoint=sd_checkpoint,
        controlnets=nets,
        prompt=prompt,
        negative_prompt=negative,
        denoise=_float(values, "denoise", "denoise", 0.01, 1.0),
        steps=_int(values, "steps", "steps", minimum=1),
        cfg=_float(values, "cfg", "CFG scale", 0.0, 30.0),
        sampler=_choice(values, "sampler", "sampler", SAMPLERS),
        seed=_int(values, "seed", "seed"),
    )

    from .video import EncodeSettings

    try:
        return RunConfig(
            face=face,
            audio=audio,
            out=_optional_path(values.get("out")),
            checkpoint=resolve_checkpoint_choice(
                values.get("checkpoint", DEFAULTS["checkpoint"]), models_dir
            ),
            mode=mode,
            faces=faces,
            frames=FrameOptions(),
            encode=EncodeSettings(crf=_int(values, "crf", "quality (CRF)", minimum=0)),
            composite=composite,
            refine=refine,
            device=str(values.get("device") or "auto"),
            batch_size=_int(values, "batch_size", "batch size", minimum=1),
            models_dir=models_dir,
            cache_dir=_optional_path(values.get("cache_dir")),
            results_dir=_optional_path(values.get("results_dir")) or Path("results"),
            allow_download=bool(values.get("allow_download", True)),
        )
    except ValueError as exc:
        raise UIInputError(str(exc)) from None


def mode_change(mode: str) -> tuple[dict, dict, dict]:
    """The mode dropdown's handler: visibility updates for the mask, restoration and refinement groups."""
    import gradio as gr

    vis = visibility_for_mode(mode)
    return (
        gr.update(visible=vis["mask"]),
        gr.update(visible=vis["restore"]),
        gr.update(visible=vis["refine"]),
    )


def _gradio_major() -> int:
    import gradio as gr

    try:
        return int(str(gr.__version__).split(".")[0])
    except ValueError:
        return 0


def _pass_audio_file_through(component) -> None:
    """Hand the uploaded audio file to the job as it is, on gradio 3.x and 4.x.

    Their ``gr.Audio(type="filepath")`` decodes every upload with pydub and writes a new WAV:
    without an ``ffmpeg``/``ffprobe`` on PATH (most WebUI installs) an mp3 or m4a fails in
    gradio before the job starts. Our audio loader reads any format through PyAV, so it only
    needs the uploaded file. gradio 5+ already passes the file through (``format=None``).
    A clip trimmed in gradio 3's editor (crop_min/crop_max) still goes through gradio.
    """
    if _gradio_major() >= 5:
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


# -- the UI ---------------------------------------------------------------------------------------
def build_ui(
    runner: UIRunner | None = None,
    *,
    need_sd_checkpoint: bool = True,
    defaults: Mapping[str, Any] | None = None,
):
    """The wav2lip-uhq UI as a ``gr.Blocks`` (the WebUI puts it in a tab, the app launches it).

    ``defaults`` overrides initial values by ``DEFAULTS`` key (the WebUI's settings: mode, detector).
    """
    unknown = set(defaults or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown UI defaults: {', '.join(sorted(unknown))}")
    import gradio as gr

    runner = runner or UIRunner()
    comps: dict[str, Any] = {}

    def eid(name: str) -> str:
        return PREFIX + name

    def values_from(args: Sequence[Any]) -> dict:
        return {**runner.base_values(), **dict(zip(UI_KEYS, args))}

    def make_config(args: Sequence[Any]) -> RunConfig:
        try:
            return config_from_ui(values_from(args), need_sd_checkpoint=need_sd_checkpoint)
        except UIInputError as exc:
            raise gr.Error(str(exc)) from None

    def recent_choices() -> list[str]:
        return [str(p) for p in runner.recent_results()]

    gallery_videos: list[str] = []  # the videos behind the gallery's pictures, in order

    def gallery_items() -> list[tuple[str, str]]:
        items = runner.recent_gallery()
        gallery_videos[:] = [video for _, _, video in items]
        return [(thumb, caption) for thumb, caption, _ in items]

    d = {**DEFAULTS, **(defaults or {})}
    shown = visibility_for_mode(d["mode"])
    with gr.Blocks(analytics_enabled=False) as demo:
        with gr.Row():
            with gr.Column():
                comps["face"] = gr.File(
                    label="Face: video or image", file_types=FACE_TYPES, elem_id=eid("face")
                )
                comps["audio"] = gr.Audio(label="Audio (speech)", type="filepath", elem_id=eid("audio"))
                _pass_audio_file_through(comps["audio"])
                with gr.Row():
                    comps["mode"] = gr.Dropdown(
                        list(MODES), value=d["mode"], label="Mode", elem_id=eid("mode")
                    )
                    ckpts = checkpoint_choices(runner.models_dir)
                    comps["checkpoint"] = gr.Dropdown(
                        ckpts,
                        value=d["checkpoint"] if d["checkpoint"] in ckpts else (ckpts[0] if ckpts else None),
                        label="Wav2Lip checkpoint",
                        elem_id=eid("checkpoint"),
                    )
                    refresh_ckpt = gr.Button("Refresh", elem_id=eid("checkpoint_refresh"))
                comps["allow_download"] = gr.Checkbox(
                    value=d["allow_download"],
                    label="Download missing released checkpoints",
                    elem_id=eid("allow_download"),
                )
                with gr.Accordion("Face detection", open=False, elem_id=eid("faces_group")):
                    with gr.Row():
                        comps["detector"] = gr.Radio(
                            ["s3fd", "dlib"], value=d["detector"], label="Detector", elem_id=eid("detector")
                        )
                        comps["smoothing"] = gr.Radio(
                            ["centered", "upstream", "none"],
                            value=d["smoothing"],
                            label="Box smoothing",
                            elem_id=eid("smoothing"),
                        )
                    with gr.Row():
                        for side in ("top", "bottom", "left", "right"):
                            key = f"pad_{side}"
                            comps[key] = gr.Number(
                                value=d[key], precision=0, label=f"Pad {side}", elem_id=eid(key)
                            )
                    with gr.Row():
                        comps["face_index"] = gr.Number(
                            value=d["face_index"],
                            precision=0,
                            label="Face index (-1: largest, 0: leftmost...)",
                            elem_id=eid("face_index"),
                        )
                        comps["box"] = gr.Textbox(
                            value=d["box"],
                            label="Fixed box: top bottom left right (empty: detect)",
                            elem_id=eid("box"),
                        )
                with gr.Accordion(
                    "Mask and blending", open=False, visible=shown["mask"], elem_id=eid("mask_group")
                ) as mask_group:
                    with gr.Row():
                        comps["mask_region"] = gr.Radio(
                            ["lower_face", "mouth"],
                            value=d["mask_region"],
                            label="Mask region",
                            elem_id=eid("mask_region"),
                        )
                        comps["blend"] = gr.Radio(
                            ["alpha", "laplacian", "poisson"],
                            value=d["blend"],
                            label="Blend",
                            elem_id=eid("blend"),
                        )
                    with gr.Row():
                        comps["mask_dilate"] = gr.Slider(
                            -0.2,
                            0.2,
                            value=d["mask_dilate"],
                            step=0.01,
                            label="Mask dilate",
                            elem_id=eid("mask_dilate"),
                        )
                        comps["mask_feather"] = gr.Slider(
                            0.0,
                            0.4,
                            value=d["mask_feather"],
                            step=0.01,
                            label="Mask feather",
                            elem_id=eid("mask_feather"),
                        )
                    with gr.Row():
                        comps["colour_match"] = gr.Checkbox(
                            value=d["colour_match"], label="Colour match", elem_id=eid("colour_match")
                        )
                        comps["regrain"] = gr.Checkbox(
                            value=d["regrain"], label="Regrain", elem_id=eid("regrain")
                        )
                        comps["aligned"] = gr.Checkbox(
                            value=d["aligned"], label="Align tilted heads", elem_id=eid("aligned")
                        )
                    with gr.Row():
                        comps["sharpen"] = gr.Slider(
                            0.0, 2.0, value=d["sharpen"], step=0.05, label="Sharpen", elem_id=eid("sharpen")
                        )
                        comps["silence"] = gr.Radio(
                            ["off", "close", "keep"],
                            value=d["silence"],
                            label="On silence",
                            elem_id=eid("silence"),
                        )
                with gr.Accordion(
                    "Restoration (enhanced)",
                    open=True,
                    visible=shown["restore"],
                    elem_id=eid("restore_group"),
                ) as restore_group:
                    comps["restorer"] = gr.Textbox(
                        value=d["restorer"],
                        label="Restorer checkpoint (empty: GFPGAN v1.4)",
                        elem_id=eid("restorer"),
                    )
                    with gr.Row():
                        comps["restore_strength"] = gr.Slider(
                            0.0,
                            1.0,
                            value=d["restore_strength"],
                            step=0.05,
                            label="Restore strength",
                            elem_id=eid("restore_strength"),
                        )
                        comps["fidelity"] = gr.Slider(
                            0.0,
                            1.0,
                            value=d["fidelity"],
                            step=0.05,
                            label="CodeFormer fidelity",
                            elem_id=eid("fidelity"),
                        )
                    comps["upscaler"] = gr.Textbox(
                        value=d["upscaler"],
                        label="Super-resolution checkpoint (optional)",
                        elem_id=eid("upscaler"),
                    )
                with gr.Accordion(
                    "Refinement (uhq)", open=True, visible=shown["refine"], elem_id=eid("refine_group")
                ) as refine_group:
                    comps["sd_checkpoint"] = gr.Textbox(
                        value=d["sd_checkpoint"],
                        label="Stable Diffusion 1.5 checkpoint (file or diffusers folder)",
                        elem_id=eid("sd_checkpoint"),
                        visible=need_sd_checkpoint,  # the WebUI refines with its loaded checkpoint
                    )
                    comps["prompt"] = gr.Textbox(
                        value=d["prompt"], lines=2, label="Prompt", elem_id=eid("prompt")
                    )
                    comps["negative_prompt"] = gr.Textbox(
                        value=d["negative_prompt"],
                        lines=2,
                        label="Negative prompt",
                        elem_id=eid("negative_prompt"),
                    )
                    with gr.Row():
                        comps["denoise"] = gr.Slider(
                            0.05, 1.0, value=d["denoise"], step=0.05, label="Denoise", elem_id=eid("denoise")
                        )
                        comps["steps"] = gr.Slider(
                            1, 100, value=d["steps"], step=1, label="Steps", elem_id=eid("steps")
                        )
                        comps["cfg"] = gr.Slider(
                            1.0, 15.0, value=d["cfg"], step=0.5, label="CFG scale", elem_id=eid("cfg")
                        )
                    with gr.Row():
                        comps["sampler"] = gr.Dropdown(
                            list(SAMPLERS), value=d["sampler"], label="Sampler", elem_id=eid("sampler")
                        )
                        comps["seed"] = gr.Number(
                            value=d["seed"], precision=0, label="Seed", elem_id=eid("seed")
                        )
                    comps["controlnet"] = gr.Textbox(
                        value=d["controlnet"],
                        label=(
                            "ControlNet model: file or folder (empty: none)"
                            if need_sd_checkpoint
                            else "ControlNet model, as in the ControlNet extension's list (empty: none)"
                        ),
                        elem_id=eid("controlnet"),
                    )
                    with gr.Row():
                        comps["controlnet_preprocessor"] = gr.Dropdown(
                            list(CONTROLNET_PREPROCESSORS),
                            value=d["controlnet_preprocessor"],
                            label="Preprocessor",
                            elem_id=eid("controlnet_preprocessor"),
                        )
                        comps["controlnet_weight"] = gr.Slider(
                            0.0,
                            2.0,
                            value=d["controlnet_weight"],
                            step=0.05,
                            label="Weight",
                            elem_id=eid("controlnet_weight"),
                        )
                        comps["controlnet_start"] = gr.Slider(
                            0.0,
                            1.0,
                            value=d["controlnet_start"],
                            step=0.05,
                            label="Start",
                            elem_id=eid("controlnet_start"),
                        )
                        comps["controlnet_end"] = gr.Slider(
                            0.0,
                            1.0,
                            value=d["controlnet_end"],
                            step=0.05,
                            label="End",
                            elem_id=eid("controlnet_end"),
                        )
                with gr.Accordion("Output", open=False, elem_id=eid("output_group")), gr.Row():
                    comps["crf"] = gr.Slider(
                        0,
                        40,
                        value=d["crf"],
                        step=1,
                        label="Quality (CRF, lower is better)",
                        elem_id=eid("crf"),
                    )
                    comps["batch_size"] = gr.Slider(
                        1, 128, value=d["batch_size"], step=1, label="Batch size", elem_id=eid("batch_size")
                    )
            with gr.Column():
                with gr.Row():
                    comps["preview_frame"] = gr.Number(
                        value=d["preview_frame"],
                        precision=0,
                        label="Preview frame",
                        elem_id=eid("preview_frame"),
                    )
                    preview_btn = gr.Button("Preview one frame", elem_id=eid("preview"))
                with gr.Row():
                    preview_img = gr.Image(
                        label="Preview", type="numpy", interactive=False, elem_id=eid("preview_image")
                    )
                    overlay_img = gr.Image(
                        label="Mask and landmarks",
                        type="numpy",
                        interactive=False,
                        elem_id=eid("preview_overlay"),
                    )
                with gr.Row():
                    run_btn = gr.Button("Run", variant="primary", elem_id=eid("run"))
                    interrupt_btn = gr.Button("Interrupt", elem_id=eid("interrupt"))
                status = gr.Textbox(value="idle", label="Progress", interactive=False, elem_id=eid("status"))
                result_video = gr.Video(label="Result", interactive=False, elem_id=eid("result"))
                settings_json = gr.JSON(label="Settings (saved as <result>.json)", elem_id=eid("settings"))
                gallery = gr.Gallery(
                    value=gallery_items(), label="Recent results", columns=4, elem_id=eid("gallery")
                )
                with gr.Row():
                    recent = gr.Dropdown(
                        recent_choices(), value=None, label="Recent results", elem_id=eid("recent")
                    )
                    refresh_recent = gr.Button("Refresh", elem_id=eid("recent_refresh"))

        inputs = [comps[k] for k in UI_KEYS]
        missing = set(UI_KEYS) - set(comps)
        assert not missing, missing

        comps["mode"].change(
            mode_change, inputs=[comps["mode"]], outputs=[mask_group, restore_group, refine_group]
        )

        def on_refresh_checkpoints(current):
            choices = checkpoint_choices(runner.models_dir)
            return gr.update(
                choices=choices, value=current if current in choices else (choices[0] if choices else None)
            )

        refresh_ckpt.click(
            on_refresh_checkpoints, inputs=[comps["checkpoint"]], outputs=[comps["checkpoint"]]
        )

        def on_preview(*args):
            config = make_config(args)
            frame = _int(values_from(args), "preview_frame", "preview frame", minimum=0)
            try:
                return runner.preview(config, frame)
            except RunnerBusy as exc:
                raise gr.Error(str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - any failure becomes one message
                raise gr.Error(_message(exc)) from None

        preview_btn.click(on_preview, inputs=inputs, outputs=[preview_img, overlay_img])

        def on_run(*args):
            config = make_config(args)
            try:
                job = runner.start(config)
            except RunnerBusy as exc:
                raise gr.Error(str(exc)) from None
            unchanged = (gr.update(), gr.update(), gr.update(), gr.update())
            while not job.done.wait(0.5):
                yield (job.progress_text(), *unchanged)
            if job.error is not None and not job.cancelled:
                yield (job.progress_text(), *unchanged)
                raise gr.Error(_message(job.error))
            if job.cancelled:
                yield (job.progress_text(), *unchanged)
                return
            out = str(job.result.output)
            yield (
                job.progress_text(),
                out,
                load_settings(out),
                gr.update(choices=recent_choices(), value=out),
                gr.update(value=gallery_items()),
            )

        run_btn.click(
            on_run, inputs=inputs, outputs=[status, result_video, settings_json, recent, gallery]
        )

        def on_interrupt():
            return "interrupting..." if runner.cancel() else runner.progress_text()

        interrupt_btn.click(on_interrupt, inputs=None, outputs=[status], queue=False)

        def on_refresh_recent(current):
            choices = recent_choices()
            return gr.update(choices=choices, value=current if current in choices else None)

        def on_refresh_gallery():
            return gr.update(value=gallery_items())

        refresh_recent.click(on_refresh_recent, inputs=[recent], outputs=[recent])
        refresh_recent.click(on_refresh_gallery, inputs=None, outputs=[gallery])

        def on_gallery_select(evt):
            index = evt.index if isinstance(evt.index, int) else evt.index[0]
            if not 0 <= index < len(gallery_videos) or not Path(gallery_videos[index]).is_file():
                return gr.update(), gr.update(), gr.update()
            path = gallery_videos[index]
            return path, load_settings(path), gr.update(choices=recent_choices(), value=path)

        # gradio finds the event argument by its annotation: a real class, not a string
        on_gallery_select.__annotations__ = {"evt": gr.SelectData}
        gallery.select(on_gallery_select, inputs=None, outputs=[result_video, settings_json, recent])

        def on_recent(path):
            if not path:
                return gr.update(), gr.update()
            return path, load_settings(path)

        recent.change(on_recent, inputs=[recent], outputs=[result_video, settings_json])

    demo.wav2lip_uhq_components = comps  # for the WebUI glue and the tests
    return demo


def _message(exc: BaseException) -> str:
    from .errors import Wav2LipUHQError

    if isinstance(exc, (Wav2LipUHQError, ValueError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def launch(
    listen: bool = False,
    port: int | None = None,
    share: bool = False,
    runner: UIRunner | None = None,
) -> None:
    """The standalone app: ``build_ui()`` served on 127.0.0.1 (0.0.0.0 with ``listen``)."""
    import inspect

    from .cache import default_cache_dir

    runner = runner or UIRunner()
    demo = build_ui(runner)
    runner.results_dir.mkdir(parents=True, exist_ok=True)
    thumbnails = Path(runner.cache_dir or default_cache_dir()) / "thumbnails"
    extra: dict[str, Any] = {}
    # The WebUI loads javascript/*.js itself; the app passes it in <head> (gradio 5+: launch(head=)).
    script = Path(__file__).resolve().parents[1] / "javascript" / "wav2lip_uhq.js"
    if script.is_file() and "head" in inspect.signature(demo.launch).parameters:
        extra["head"] = f"<script>{script.read_text(encoding='utf-8')}</script>"
    demo.queue()  # generators (progress) need it in gradio 3.x; the default elsewhere
    demo.launch(
        server_name="0.0.0.0" if listen else "127.0.0.1",
        server_port=port,
        share=share,
        # results and the gallery's thumbnails: the only files outside gradio's own folders it serves
        allowed_paths=[str(runner.results_dir.resolve()), str(thumbnails.resolve())],
        **extra,
    )


__all__ = [
    "DEFAULTS",
    "UIInputError",
    "UIRunner",
    "build_ui",
    "checkpoint_choices",
    "config_from_ui",
    "file_path",
    "launch",
    "mode_change",
    "parse_box",
    "visibility_for_mode",
]
