"""The form's sections, made from the option schema: one widget per option, its range, choices
and default exactly as declared (a slider cannot offer what validation refuses)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..options import Option, control_sub_options, registry

PREFIX = "wav2lip_uhq_"
# section id -> (title, option groups, shown in which modes' visibility key or None: always)
SECTIONS = (
    ("faces_group", "Face detection", ("faces",), None),
    ("frames_group", "Frames", ("frames",), None),
    ("mask_group", "Mask and blending", ("compositing",), "mask"),
    ("restore_group", "Restoration (enhanced)", ("restoration",), "restore"),
    ("refine_group", "Refinement (uhq)", ("refinement",), "refine"),
    ("extras_group", "Extra outputs (same pass, beside the result)", ("extras",), None),
    ("output_group", "Output and compute", ("output", "compute"), None),
)
TOP_KEYS = ("mode", "checkpoint", "allow_download")  # drawn at the top by the app, not in a section
PER_ROW = 3


def eid(name: str) -> str:
    return PREFIX + name


def _label(opt_label: str) -> str:
    return opt_label[:1].upper() + opt_label[1:]


def widget(gr, opt: Option, value: Any, **extra: Any):
    """The gradio component for one option (not for ``ints4``/``controlnets``, see ``section``)."""
    label = _label(opt.label)
    if opt.nullable and opt.kind in ("int", "float"):
        label += f" ({opt.null:g}: {'largest' if opt.key == 'face_index' else 'off'})"
    common = dict(label=label, elem_id=eid(opt.key), **extra)
    k = opt.kind
    if k == "bool":
        return gr.Checkbox(value=value, **common)
    if k == "choice_set":
        return gr.CheckboxGroup(list(opt.choices), value=list(value or ()), **common)
    if k == "choice":
        radio = opt.widget == "radio" or (not opt.widget and len(opt.choices) <= 4)
        return (gr.Radio if radio else gr.Dropdown)(list(opt.choices), value=value, **common)
    if k in ("int", "float"):
        slider = opt.widget in ("", "slider") and not opt.nullable and None not in (opt.minimum, opt.maximum)
        if slider:
            step = opt.step or (1 if k == "int" else 0.01)
            return gr.Slider(opt.minimum, opt.maximum, value=value, step=step, **common)
        return gr.Number(value=value, precision=0 if k == "int" else None, **common)
    lines = 2 if k == "text" else 1
    return gr.Textbox(value="" if value is None else value, lines=lines, **common)


def _ints4(gr, opt: Option, values: Mapping[str, Any], comps: dict) -> None:
    with gr.Row():
        for key, label in zip(opt.parts, opt.part_labels or opt.parts):
            comps[key] = gr.Number(value=values[key], precision=0, label=_label(label), elem_id=eid(key))


def _controlnet(gr, values: Mapping[str, Any], comps: dict, model_widget: Callable | None) -> None:
    subs = list(control_sub_options().values())
    model, rest = subs[0], subs[1:]
    if model_widget is not None:
        comps[model.key] = model_widget(values[model.key])
    else:
        comps[model.key] = widget(gr, model, values[model.key])
    with gr.Row():
        for sub in rest:
            comps[sub.key] = widget(gr, sub, values[sub.key])


def section_options(groups: tuple[str, ...]) -> list[Option]:
    return [o for o in registry().values() if o.ui and o.group in groups and o.key not in TOP_KEYS]


def section(gr, groups: tuple[str, ...], values: Mapping[str, Any], comps: dict, *,
            hidden: tuple[str, ...] = (), controlnet_widget: Callable | None = None) -> None:
    """The widgets of ``groups`` into ``comps`` (by key), laid out in rows of a few; ``hidden``
    keys get an invisible component (the host supplies the value, e.g. the WebUI's SD model)."""
    row: list[Option] = []

    def flush() -> None:
        if row:
            with gr.Row():
                for o in row:
                    comps[o.key] = widget(gr, o, values[o.key])
            row.clear()

    for opt in section_options(groups):
        if opt.key in hidden:
            comps[opt.key] = widget(gr, opt, values[opt.key], visible=False)
        elif opt.kind == "ints4":
            flush()
            _ints4(gr, opt, values, comps)
        elif opt.kind == "controlnets":
            flush()
            _controlnet(gr, values, comps, controlnet_widget)
        elif opt.kind in ("text", "path", "str", "box", "choice_set"):
            flush()
            comps[opt.key] = widget(gr, opt, values[opt.key])
        else:
            row.append(opt)
            if len(row) == PER_ROW:
                flush()
    flush()


def element_ids() -> set[str]:
    """Every elem_id suffix the form can make (for the javascript's tooltips and the tests)."""
    ids = {"run", "interrupt", "preview", "preview_frame", "preview_image", "preview_overlay", "status",
           "result", "extra_files", "settings", "summary", "gallery", "recent", "recent_refresh", "checkpoint_refresh",
           "face", "audio", *TOP_KEYS, *(s[0] for s in SECTIONS),
           # text to speech, the face picture, the WebUI's "Send frame to" buttons
           "face_image", "speech_group", "tts_language", "speak", "send_to_img2img", "send_to_extras",
           # several speakers and time ranges
           "speakers_group", "face_pick", *(f"speaker{n}_{part}" for n in range(2, 6)
                                            for part in ("audio", "face", "ranges"))}
    for opt in registry().values():
        if opt.ui:
            ids.update(opt.value_keys())
    return ids
