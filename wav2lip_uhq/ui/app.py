"""``build_ui``: the one gradio UI (WebUI tab and standalone app), and ``launch`` for the app.

Uses only what gradio 3.41.2 (A1111), 4.40 (Forge) and current gradio have in common: no
``.style()``, no ``source``/``sources``, updates through ``gr.update(...)``, every elem_id
prefixed ``wav2lip_uhq_``. gradio is imported inside the functions, torch only when a job starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import options
from ..config import MODES
from ..ui_runner import UIRunner
from .compat import image_input_sources, pass_audio_file_through
from .form import SECTIONS, eid, section, widget
from .handlers import Handlers, mode_change
from .values import (
    DEFAULTS,
    FACE_PICK,
    FACE_TYPES,
    SPEAKER_ROWS,
    UI_KEYS,
    checkpoint_choices,
    visibility_for_mode,
)


def _inputs_column(gr, d: Mapping[str, Any], comps: dict, runner: UIRunner):
    """Face, audio, mode and checkpoint: what every run needs. Returns the checkpoint refresh button."""
    comps["face"] = gr.File(label="Face: video or image", file_types=FACE_TYPES, elem_id=eid("face"))
    comps["face_image"] = gr.Image(label="...or a picture: drop, paste or webcam (becomes the face)", type="pil",
                                   elem_id=eid("face_image"), **image_input_sources())
    comps["audio"] = gr.Audio(label="Audio (speech)", type="filepath", elem_id=eid("audio"))
    pass_audio_file_through(comps["audio"])
    _speech_box(gr, d, comps, runner)
    _speakers_box(gr, d, comps)
    with gr.Row():
        comps["mode"] = gr.Dropdown(list(MODES), value=d["mode"], label="Mode", elem_id=eid("mode"))
        ckpts = checkpoint_choices(runner.models_dir)
        value = d["checkpoint"] if d["checkpoint"] in ckpts else (ckpts[0] if ckpts else None)
        comps["checkpoint"] = gr.Dropdown(ckpts, value=value, label="Generator checkpoint",
                                          elem_id=eid("checkpoint"))
        refresh = gr.Button("Refresh", elem_id=eid("checkpoint_refresh"))
    comps["allow_download"] = gr.Checkbox(value=d["allow_download"], label="Download missing released checkpoints",
                                          elem_id=eid("allow_download"))
    return refresh


def _speech_box(gr, d: Mapping[str, Any], comps: dict, runner: UIRunner) -> None:
    """Text to speech: the text, engine, language, voice, speed and pause, and Speak, which puts the
    spoken audio into the audio player (heard before the lip sync). A text replaces the audio."""
    from .. import speech

    engine = d["tts_engine"]
    voice = d["voice"] or speech.default_voice(engine)
    folder = runner.models_dir
    lang = speech.language_of(engine, voice, folder)
    with gr.Accordion("Text to speech (instead of an audio file)", open=False, elem_id=eid("speech_group")):
        comps["text"] = widget(gr, options.get("text"), d["text"])
        with gr.Row():
            comps["tts_engine"] = widget(gr, options.get("tts_engine"), engine)
            comps["tts_language"] = gr.Dropdown(speech.languages(engine, folder), value=lang, label="Language",
                                                elem_id=eid("tts_language"))
            comps["voice"] = gr.Dropdown([v for _, v in speech.voices_for(engine, lang, folder)], value=voice,
                                         label="Voice", elem_id=eid("voice"))
        with gr.Row():
            comps["tts_speed"] = widget(gr, options.get("tts_speed"), d["tts_speed"])
            comps["tts_pause"] = widget(gr, options.get("tts_pause"), d["tts_pause"])
        comps["speak"] = gr.Button("Speak (hear it before the lip sync)", elem_id=eid("speak"))


def _speakers_box(gr, d: Mapping[str, Any], comps: dict) -> None:
    """Several speakers and time ranges: up to four more voices, each with the face it moves (and
    its own ranges), the run's ranges and delay, and which speaker a click on the preview picks."""
    with gr.Accordion("Speakers & ranges", open=False, elem_id=eid("speakers_group")):
        for n, (audio, face, ranges) in enumerate(SPEAKER_ROWS, 2):
            with gr.Row():
                comps[audio] = gr.Audio(label=f"Speaker {n}: audio", type="filepath", elem_id=eid(audio))
                pass_audio_file_through(comps[audio])
                with gr.Column():
                    comps[face] = gr.Number(value=d[face], precision=0, label=f"Speaker {n}: face index "
                                            "(from the left; -1: largest)", elem_id=eid(face))
                    comps[ranges] = gr.Textbox(value=d[ranges], label=f"Speaker {n}: ranges (empty: the run's)",
                                               elem_id=eid(ranges))
        comps["ranges"] = widget(gr, options.get("ranges"), d["ranges"])
        with gr.Row():
            comps["delay"] = widget(gr, options.get("delay"), d["delay"])
            comps[FACE_PICK] = gr.Radio([str(n) for n in range(1, 2 + len(SPEAKER_ROWS))], value=d[FACE_PICK],
                                        label="A click on the preview picks the face of speaker",
                                        elem_id=eid(FACE_PICK))


def _wire_face_pick(gr, comps: dict, h: Handlers, preview_img, status, inputs: list) -> None:
    """A click on the preview image sets the chosen speaker's face index."""

    def on_select(evt, *args):
        return h.pick_face(evt, args)

    on_select.__annotations__ = {"evt": gr.SelectData}  # gradio finds the event by its annotation
    targets = [comps["face_index"], *(comps[row[1]] for row in SPEAKER_ROWS)]
    preview_img.select(on_select, inputs=inputs, outputs=[*targets, status])


def _wire_speech(gr, comps: dict, h: Handlers, inputs: list) -> None:
    def speak(*args, progress=gr.Progress()):  # noqa: B008 - gradio finds the tracker by this default
        return h.speak(args, progress)

    comps["speak"].click(speak, inputs=inputs, outputs=[comps["audio"]])
    comps["tts_engine"].change(h.engine_change, inputs=[comps["tts_engine"], comps["voice"]],
                               outputs=[comps["tts_language"], comps["voice"]])
    comps["tts_language"].change(h.language_change,
                                 inputs=[comps["tts_engine"], comps["tts_language"], comps["voice"]],
                                 outputs=[comps["voice"]])
    comps["face_image"].change(h.face_from_image, inputs=[comps["face_image"]], outputs=[comps["face"]])


def _resume_row(gr, h: Handlers):
    """Resume (the last interrupted job, with its own settings) and what it resumes: shown only while
    there is one."""
    job = h.runner.interrupted_job()
    info = gr.Textbox(value=job.describe() if job else "", label="Interrupted job (Resume continues it)",
                      lines=2, interactive=False, visible=job is not None, elem_id=eid("resume_info"))
    button = gr.Button("Resume", visible=job is not None, elem_id=eid("resume"))
    return button, info


def _controlnet_dropdown(gr, models: Callable[[bool], list[str]]) -> Callable[[Any], Any]:
    """The ControlNet model as a dropdown of the host's list (the WebUI's ControlNet models), with
    a Refresh button that rescans it; empty: no ControlNet."""

    def make(value):
        choices = ["", *models(False)]
        with gr.Row():
            dropdown = gr.Dropdown(choices, value=value if value in choices else "", label="ControlNet model "
                                   "(the ControlNet extension's list; empty: none)", elem_id=eid("controlnet"))
            refresh = gr.Button("Refresh", elem_id=eid("controlnet_refresh"))

        def on_refresh(current):
            fresh = ["", *models(True)]
            return gr.update(choices=fresh, value=current if current in fresh else "")

        refresh.click(on_refresh, inputs=[dropdown], outputs=[dropdown])
        return dropdown

    return make


def _sections(gr, d: Mapping[str, Any], comps: dict, need_sd_checkpoint: bool,
              controlnet_models: Callable[[bool], list[str]] | None = None) -> dict[str, Any]:
    """The option sections as accordions; returns the accordions whose visibility follows the mode."""
    shown = visibility_for_mode(d["mode"])
    groups = {}
    hidden = () if need_sd_checkpoint else ("sd_checkpoint",)  # the WebUI refines with its loaded model
    cn_widget = _controlnet_dropdown(gr, controlnet_models) if controlnet_models is not None else None
    for section_id, title, option_groups, vis in SECTIONS:
        visible = True if vis is None else shown[vis]
        with gr.Accordion(title, open=vis is not None, visible=visible, elem_id=eid(section_id)) as acc:
            section(gr, option_groups, d, comps, hidden=hidden, controlnet_widget=cn_widget)
        groups[section_id] = acc
    return groups


def _batch_section(gr, h: Handlers, comps: dict):
    """Batch: uploaded faces + audios (paired by name or number) or a manifest naming them, every row
    with the form's settings (``batch.ui``). Returns the function that wires it to the form's inputs,
    and its handlers."""
    from ..batch.ui import BatchHandlers

    b = BatchHandlers(h)
    with gr.Accordion("Batch: many faces and audios (results/batch/)", open=False, elem_id=eid("batch_group")):
        comps["batch_files"] = gr.File(label="Faces and audios: a folder's files, paired by name or number",
                                       file_count="multiple", elem_id=eid("batch_files"))
        comps["batch_manifest"] = gr.File(label="Manifest (optional): CSV or JSONL naming the uploaded files",
                                          file_types=[".csv", ".jsonl"], elem_id=eid("batch_manifest"))
        with gr.Row():
            run = gr.Button("Run batch", elem_id=eid("batch_run"))
            stop = gr.Button("Stop batch", elem_id=eid("batch_stop"))
        status = gr.Textbox(value="", label="Batch progress", interactive=False, elem_id=eid("batch_status"))
        summary = gr.JSON(label="Batch summary", elem_id=eid("batch_summary"))

    def wire(inputs: list) -> None:
        run.click(b.run_batch, inputs=[comps["batch_files"], comps["batch_manifest"], *inputs], outputs=[status, summary])
        stop.click(b.stop_batch, inputs=None, outputs=[status], queue=False)

    return wire, b


def build_ui(
    runner: UIRunner | None = None,
    *,
    need_sd_checkpoint: bool = True,
    defaults: Mapping[str, Any] | None = None,
    send_targets: Sequence[tuple[str, str]] = (),
    controlnet_models: Callable[[bool], list[str]] | None = None,
):
    """The wav2lip-uhq UI as a ``gr.Blocks`` (the WebUI puts it in a tab, the app launches it).

    ``defaults`` overrides initial values by ``DEFAULTS`` key (the WebUI's settings: mode, detector).
    ``send_targets`` ((tab name, title), ...): "Send frame to" buttons under the preview, which the
    host wires to its tabs (the WebUI: img2img, Extras). ``controlnet_models(update)``: the host's
    ControlNet model names, shown as a dropdown instead of a free-text box.
    """
    unknown = set(defaults or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown UI defaults: {', '.join(sorted(unknown))}")
    import gradio as gr

    runner = runner or UIRunner()
    h = Handlers(runner, need_sd_checkpoint)
    comps: dict[str, Any] = {}
    d = {**DEFAULTS, **(defaults or {})}
    with gr.Blocks(analytics_enabled=False) as demo:
        with gr.Row():
            with gr.Column():
                refresh_ckpt = _inputs_column(gr, d, comps, runner)
                groups = _sections(gr, d, comps, need_sd_checkpoint, controlnet_models)
            with gr.Column():
                with gr.Row():
                    comps["preview_frame"] = gr.Number(value=d["preview_frame"], precision=0,
                                                       label="Preview frame", elem_id=eid("preview_frame"))
                    preview_btn = gr.Button("Preview one frame", elem_id=eid("preview"))
                with gr.Row():
                    # pil: a frame the WebUI's "Send to" buttons can hand to img2img / Extras
                    preview_img = gr.Image(label="Preview", type="pil", interactive=False,
                                           elem_id=eid("preview_image"))
                    overlay_img = gr.Image(label="Mask and landmarks", type="numpy", interactive=False,
                                           elem_id=eid("preview_overlay"))
                comps["preview_image"] = preview_img
                if send_targets:
                    with gr.Row():
                        for target, title in send_targets:
                            comps[f"send_to_{target}"] = gr.Button(f"Send frame to {title}", size="sm",
                                                                   elem_id=eid(f"send_to_{target}"))
                with gr.Row():
                    run_btn = gr.Button("Run", variant="primary", elem_id=eid("run"))
                    interrupt_btn = gr.Button("Interrupt", elem_id=eid("interrupt"))
                resume_btn, resume_info = comps["resume"], comps["resume_info"] = _resume_row(gr, h)
                status = gr.Textbox(value="idle", label="Progress", interactive=False, elem_id=eid("status"))
                result_video = gr.Video(label="Result", interactive=False, elem_id=eid("result"))
                extra_files = gr.File(label="Extra outputs", file_count="multiple", interactive=False,
                                      visible=False, elem_id=eid("extra_files"))  # shown after a run with some
                summary = gr.Textbox(label="Summary", interactive=False, elem_id=eid("summary"))
                with gr.Accordion("Settings (saved as <result>.json)", open=False):
                    settings_json = gr.JSON(label="Settings", elem_id=eid("settings"))
                gallery = gr.Gallery(value=h.gallery_items(), label="Recent results", columns=4,
                                     elem_id=eid("gallery"))
                with gr.Row():
                    recent = gr.Dropdown(h.recent_choices(), value=None, label="Recent results",
                                         elem_id=eid("recent"))
                    refresh_recent = gr.Button("Refresh", elem_id=eid("recent_refresh"))

        wire_batch, batch_handlers = _batch_section(gr, h, comps)
        missing = set(UI_KEYS) - set(comps)
        assert not missing, missing
        inputs = [comps[k] for k in UI_KEYS]
        wire_batch(inputs)
        mode_groups = [groups["mask_group"], groups["restore_group"], groups["refine_group"]]
        _wire_speech(gr, comps, h, inputs)
        comps["mode"].change(mode_change, inputs=[comps["mode"]], outputs=mode_groups)
        refresh_ckpt.click(h.refresh_checkpoints, inputs=[comps["checkpoint"]], outputs=[comps["checkpoint"]])
        preview_btn.click(h.preview, inputs=inputs, outputs=[preview_img, overlay_img, status])
        _wire_face_pick(gr, comps, h, preview_img, status, inputs)
        run_outputs = [status, result_video, summary, settings_json, recent, gallery, extra_files]
        run_btn.click(h.run, inputs=inputs, outputs=run_outputs).then(h.resume_state, None, [resume_btn, resume_info])
        resume_btn.click(h.resume, inputs=None, outputs=run_outputs).then(h.resume_state, None,
                                                                         [resume_btn, resume_info])
        interrupt_btn.click(h.interrupt, inputs=None, outputs=[status], queue=False)
        refresh_recent.click(h.refresh_recent, inputs=[recent], outputs=[recent])
        refresh_recent.click(h.refresh_gallery, inputs=None, outputs=[gallery])

        def on_gallery_select(evt):
            return h.gallery_select(evt)

        # gradio finds the event argument by its annotation: a real class, not a string
        on_gallery_select.__annotations__ = {"evt": gr.SelectData}
        gallery.select(on_gallery_select, inputs=None, outputs=[result_video, settings_json, recent])
        recent.change(h.recent, inputs=[recent], outputs=[result_video, settings_json])

    demo.wav2lip_uhq_components = comps  # for the WebUI glue and the tests
    demo.wav2lip_uhq_batch = batch_handlers
    return demo


def launch(
    listen: bool = False,
    port: int | None = None,
    share: bool = False,
    runner: UIRunner | None = None,
) -> None:
    """The standalone app: ``build_ui()`` served on 127.0.0.1 (0.0.0.0 with ``listen``)."""
    import inspect

    from ..cache import default_cache_dir

    runner = runner or UIRunner()
    demo = build_ui(runner)
    runner.results_dir.mkdir(parents=True, exist_ok=True)
    thumbnails = Path(runner.cache_dir or default_cache_dir()) / "thumbnails"
    extra: dict[str, Any] = {}
    # The WebUI loads javascript/*.js itself; the app passes it in <head> (gradio 5+: launch(head=)).
    script = Path(__file__).resolve().parents[2] / "javascript" / "wav2lip_uhq.js"
    if script.is_file() and "head" in inspect.signature(demo.launch).parameters:
        extra["head"] = f"<script>{script.read_text(encoding='utf-8')}</script>"
    demo.queue()  # generators (progress) need it in gradio 3.x; the default elsewhere
    demo.launch(
        server_name="0.0.0.0" if listen else "127.0.0.1",
        server_port=port,
        share=share,
        # results and the gallery's thumbnails: the only files outside gradio's own folders it serves
        # (and the cache's spoken audio and face pictures, shown back in the audio and face inputs)
        allowed_paths=[str(runner.results_dir.resolve()), str(thumbnails.resolve()),
                       str((thumbnails.parent / "speech").resolve()), str((thumbnails.parent / "faces").resolve())],
        **extra,
    )
