"""WebUI glue (AUTOMATIC1111 1.6+ and Forge): settings, the tab, the API routes, the host context.

``scripts/wav2lip_uhq_extension.py`` only calls ``register()``. Everything the WebUI provides
(``modules.*``, gradio) is imported inside functions, so this module imports anywhere and is
tested against a fake of the WebUI's modules.

Inside the WebUI every job (tab or API) runs through one ``UIRunner`` whose host context holds the
WebUI's ``queue_lock`` (no txt2img/img2img runs on the GPU at the same time), reports progress to
``shared.state`` (the WebUI's progress bar and Interrupt button work) and refines ``uhq`` mouths
with the WebUI's loaded SD model instead of a second copy.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import options as run_options

log = logging.getLogger(__name__)

TAB_TITLE = "Wav2Lip UHQ"
TAB_ID = "wav2lip_uhq"
SECTION = ("wav2lip_uhq", "Wav2Lip UHQ")
MODELS_SUBDIR = "Wav2Lip-UHQ"  # under the WebUI's models folder, never inside the extension
OPT_MODELS_DIR = "wav2lip_uhq_models_dir"
OPT_RESULTS_DIR = "wav2lip_uhq_results_dir"
OPT_DEFAULT_MODE = "wav2lip_uhq_default_mode"
OPT_DEFAULT_DETECTOR = "wav2lip_uhq_default_detector"
OPT_ALLOW_DOWNLOAD = "wav2lip_uhq_allow_download"
OPT_API_DIRS = "wav2lip_uhq_api_input_dirs"
OPT_API_ENABLED = "wav2lip_uhq_api_enabled"
OPT_KEEP_MODELS = "wav2lip_uhq_keep_models"
FLAG_MODELS_DIR = "wav2lip_uhq_models_dir"  # preload.py: --wav2lip-uhq-models-dir
FLAG_CACHE_DIR = "wav2lip_uhq_cache_dir"
FLAG_DEVICE = "wav2lip_uhq_device"


def option(key: str, default: Any) -> Any:
    """A setting's value; its default before the settings are registered (tests, early API)."""
    from modules import shared

    value = shared.opts.data.get(key, default)
    return default if value is None else value


def flag(name: str, default: Any = None) -> Any:
    """A preload flag; ``default`` where preload did not run (tests, some Forge API paths)."""
    from modules import shared

    return getattr(shared.cmd_opts, name, None) or default


@dataclass
class HostPaths:
    models_dir: Path
    cache_dir: Path
    results_dir: Path
    uploads_dir: Path
    api_dirs: tuple[Path, ...]


def host_paths() -> HostPaths:
    """Folders from the flags, then the settings, then the WebUI's own folders."""
    from modules import paths

    data = Path(getattr(paths, "data_path", "."))
    models = flag(FLAG_MODELS_DIR) or option(OPT_MODELS_DIR, "") or Path(paths.models_path) / MODELS_SUBDIR
    cache = flag(FLAG_CACHE_DIR) or data / "cache" / "wav2lip-uhq"
    try:
        from modules.paths_internal import default_output_dir
    except ImportError:
        default_output_dir = data / "outputs"
    results = option(OPT_RESULTS_DIR, "") or Path(default_output_dir) / "wav2lip-uhq"
    extra = str(option(OPT_API_DIRS, "") or "")
    lines = [line.strip() for line in extra.replace(";", "\n").splitlines()]
    api_dirs = tuple(Path(line).expanduser() for line in lines if line)
    cache = Path(cache).expanduser()
    return HostPaths(Path(models).expanduser(), cache, Path(results).expanduser(), cache / "api-uploads",
                     api_dirs)


@contextlib.contextmanager
def _interrupt_webui_on_cancel(job, state):
    """While the job runs, our Interrupt button and the API's cancel (``job.cancel_event``) also
    interrupt the WebUI's own sampler (``state.interrupt()``), which otherwise finishes the mouth
    crop it is on (minutes at 512 px on a CPU). Never after the job: a later generation of the
    user's must not be interrupted."""
    guard = threading.Lock()
    running = [True]

    def watch() -> None:
        while True:
            cancelled = job.cancel_event.wait(0.2)  # returns at once when set
            with guard:
                if not running[0]:
                    return
                if cancelled:
                    state.interrupt()
                    return

    threading.Thread(target=watch, name="wav2lip-uhq-interrupt", daemon=True).start()
    try:
        yield
    finally:
        with guard:
            running[0] = False


@contextlib.contextmanager
def webui_job(job):
    """The host context of every job and preview: the queue lock, ``shared.state`` progress and
    interrupt (both ways), memory cleanup afterwards."""
    from modules import shared
    from modules.call_queue import queue_lock

    with queue_lock:
        state = shared.state
        state.begin(job="wav2lip_uhq")
        state.job_count = 1

        def report(stage: str, done: int, total: int) -> None:
            state.textinfo = f"Wav2Lip UHQ: {stage}"
            state.sampling_step, state.sampling_steps = done, max(total, 1)

        job.on_progress = report
        try:
            with _interrupt_webui_on_cancel(job, state):
                yield lambda: bool(state.interrupted or getattr(state, "stopping_generation", False))
        finally:
            job.on_progress = None
            state.end()
            if not keep_models():
                release_models()
            with contextlib.suppress(Exception):
                from modules import devices

                devices.torch_gc()


# -- models between jobs ---------------------------------------------------------------------------
def keep_models() -> bool:
    """Keep the lip-sync models loaded between jobs (the setting; by default yes, except when the
    WebUI runs with --lowvram)."""
    return bool(option(OPT_KEEP_MODELS, _keep_models_default()))


def _keep_models_default() -> bool:
    from modules import shared

    cmd = shared.cmd_opts
    return not getattr(cmd, "lowvram", False)


def release_models() -> None:
    """Drop our loaded models (the next job loads them again); a running job keeps its own."""
    with _host_lock:
        h = _host
    if h is not None:
        h.runner.release_models()
        log.info("wav2lip-uhq: models released")


def _follow_webui_unload() -> None:
    """Release our models too when the WebUI unloads its checkpoint (Settings -> Actions,
    ``POST /sdapi/v1/unload-checkpoint``): both call ``sd_models.unload_model_weights``, which
    has no callback, so it is wrapped once (a failure of ours never breaks the WebUI's)."""
    from modules import sd_models

    original = getattr(sd_models, "unload_model_weights", None)
    if original is None or getattr(original, "_wav2lip_uhq", False):
        return

    @functools.wraps(original)
    def unload_model_weights(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        finally:
            try:
                release_models()
            except Exception as exc:  # noqa: BLE001 - the WebUI's unload must never fail because of us
                log.warning("wav2lip-uhq: could not release its models: %s", exc)

    unload_model_weights._wav2lip_uhq = True
    sd_models.unload_model_weights = unload_model_weights


def on_memory_settings() -> None:
    """The memory setting (next to the others in Settings -> Wav2Lip UHQ)."""
    from modules import shared

    shared.opts.add_option(OPT_KEEP_MODELS, shared.OptionInfo(
        _keep_models_default(), "Keep the lip-sync models loaded between jobs (off: load them for every job, "
        "freeing their memory in between; also released when the WebUI unloads its checkpoint)",
        section=SECTION))


class WebUIHost:
    """One runner and one API job queue for the WebUI process."""

    def __init__(self) -> None:
        from .refine import create_refiner
        from .ui_runner import UIRunner

        p = host_paths()
        self.paths = p
        self.runner = UIRunner(results_dir=p.results_dir, models_dir=p.models_dir, cache_dir=p.cache_dir,
                               device=flag(FLAG_DEVICE, "auto"), job_context=webui_job,
                               # uhq refines with the WebUI's loaded SD model and ControlNet; the job
                               # already holds the queue lock (webui_job): the refiner must not take it
                               refiner_factory=functools.partial(create_refiner, backend="webui",
                                                                 hold_queue_lock=False))
        self.jobs = None
        self.policy = None

    def refresh_paths(self) -> None:
        """Settings changed: the next job (tab or API) uses the new folders."""
        p = self.paths = host_paths()
        self.runner.results_dir, self.runner.models_dir, self.runner.cache_dir = (
            p.results_dir, p.models_dir, p.cache_dir)
        if self.policy is not None:  # the routes hold this object: update it in place
            new = self.api_policy()
            self.policy.__dict__.update(new.__dict__)

    def ui_defaults(self) -> dict[str, Any]:
        return {
            "mode": option(OPT_DEFAULT_MODE, run_options.get("mode").default),
            "detector": option(OPT_DEFAULT_DETECTOR, run_options.get("detector").default),
            "allow_download": bool(option(OPT_ALLOW_DOWNLOAD, True)),
        }

    def api_policy(self):
        from .api import ApiPolicy

        p = self.paths
        return ApiPolicy(results_dir=p.results_dir, uploads_dir=p.uploads_dir, allowed_dirs=p.api_dirs,
                         allow_download=bool(option(OPT_ALLOW_DOWNLOAD, True)),
                         models_dir=p.models_dir)


_host: WebUIHost | None = None
_host_lock = threading.Lock()


def host() -> WebUIHost:
    global _host
    with _host_lock:
        if _host is None:
            _host = WebUIHost()
        return _host


# -- callbacks -----------------------------------------------------------------------------------
def on_ui_settings() -> None:
    import gradio as gr
    from modules import shared

    def add(key: str, info) -> None:
        shared.opts.add_option(key, info)

    section = SECTION
    mode, detector = run_options.get("mode"), run_options.get("detector")
    refresh = lambda: host().refresh_paths()  # noqa: E731 - settings onchange takes no arguments
    add(OPT_MODELS_DIR, shared.OptionInfo(
        "", f"Models folder (empty: models/{MODELS_SUBDIR})", section=section, onchange=refresh))
    add(OPT_RESULTS_DIR, shared.OptionInfo(
        "", "Results folder (empty: outputs/wav2lip-uhq)", section=section, onchange=refresh))
    add(OPT_DEFAULT_MODE, shared.OptionInfo(
        mode.default, "Default mode", gr.Radio, {"choices": list(mode.choices)}, section=section
    ).needs_reload_ui())
    add(OPT_DEFAULT_DETECTOR, shared.OptionInfo(
        detector.default, "Default face detector", gr.Radio, {"choices": list(detector.choices)}, section=section
    ).needs_reload_ui())
    add(OPT_ALLOW_DOWNLOAD, shared.OptionInfo(
        True, "Download missing released models (Wav2Lip, S3FD, FAN, GFPGAN) into the models folder",
        section=section).needs_reload_ui())
    add(OPT_API_DIRS, shared.OptionInfo(
        "", "API: server folders that requests may read media from by path (one per line)", gr.Textbox,
        {"lines": 2}, section=section, onchange=refresh, restrict_api=True))
    add(OPT_API_ENABLED, shared.OptionInfo(
        False, "API: accept lip-sync jobs over HTTP without --api (anyone who reaches the port can start "
        "jobs unless --api-auth is set)", section=section, restrict_api=True).needs_reload_ui())


def controlnet_models(update: bool = False) -> list[str]:
    """The ControlNet extension's model names (A1111's sd-webui-controlnet or Forge's), or none."""
    from .refine.webui_backend import find_controlnet

    try:
        cn = find_controlnet()
        return cn.models(update) if cn is not None else []
    except Exception as exc:  # noqa: BLE001 - a broken extension must not break our tab
        log.warning("could not list the ControlNet models: %s", exc)
        return []


def on_ui_tabs():
    from .ui import build_ui

    h = host()
    h.refresh_paths()
    demo = build_ui(h.runner, need_sd_checkpoint=False, defaults=h.ui_defaults(), send_targets=SEND_TARGETS,
                    controlnet_models=controlnet_models)
    try:
        register_paste_targets(demo.wav2lip_uhq_components)
    except Exception as exc:  # noqa: BLE001 - an unusual WebUI: the tab works without the Send buttons
        log.warning("wav2lip-uhq: no Send to buttons: %s", exc)
    return [(demo, TAB_TITLE, TAB_ID)]


# -- "Send to" buttons ---------------------------------------------------------------------------
SEND_SOURCES = ("txt2img", "img2img", "extras")  # result galleries that get "Send to Wav2Lip UHQ"
SEND_TARGETS = (("img2img", "img2img"), ("extras", "Extras"))  # where our preview frame can go
_result_galleries: dict[str, Any] = {}


def _copypaste():
    """The WebUI's paste-button module (``infotext_utils`` since 1.7, ``generation_parameters_copypaste``
    before)."""
    try:
        from modules import infotext_utils
    except ImportError:
        from modules import generation_parameters_copypaste as infotext_utils
    return infotext_utils


def register_paste_targets(comps: dict) -> None:
    """Our tab as a paste destination (the face picture receives a sent image; the WebUI's JS calls
    ``switch_to_wav2lip_uhq``), and our "Send frame to" buttons bound to img2img / Extras."""
    cp = _copypaste()
    cp.add_paste_fields(TAB_ID, comps["face_image"], [])
    for target, _ in SEND_TARGETS:
        cp.register_paste_params_button(cp.ParamBinding(
            paste_button=comps[f"send_to_{target}"], tabname=target, source_image_component=comps["preview_image"]))


def on_after_component(component, **kwargs) -> None:
    """Adds "Send to Wav2Lip UHQ" beside "Send to extras" under the txt2img, img2img and Extras
    results: the WebUI makes each result gallery (``<tab>_gallery``) before its buttons, and this
    runs inside the buttons' row, so the new button sits with them."""
    elem_id = kwargs.get("elem_id") or getattr(component, "elem_id", None)
    for tab in SEND_SOURCES:
        if elem_id == f"{tab}_gallery":
            _result_galleries[tab] = component
        elif elem_id == f"{tab}_send_to_extras" and tab in _result_galleries:
            _send_button(tab, _result_galleries.pop(tab))


def _send_button(tab: str, gallery) -> None:
    cp = _copypaste()
    try:
        from modules.ui_components import ToolButton

        button = ToolButton("\U0001f5e3\ufe0f", elem_id=f"{tab}_send_to_{TAB_ID}",
                            tooltip=f"Send image to the {TAB_TITLE} tab (as the face).")
    except (ImportError, NotImplementedError):  # WebUI < 1.6: a plain small button
        import gradio as gr

        button = gr.Button(f"Send to {TAB_TITLE}", size="sm", elem_id=f"{tab}_send_to_{TAB_ID}")
    cp.register_paste_params_button(cp.ParamBinding(paste_button=button, tabname=TAB_ID,
                                                    source_image_component=gallery))


def api_jobs_enabled(demo) -> bool:
    """Job routes only where the WebUI serves its own API (``--api``; ``--nowebui``, where ``demo``
    is None) or the admin opted in: A1111 calls ``app_started`` in every launch, and a job route
    open on a ``--listen``/``--share`` server would let anyone start GPU jobs."""
    from modules import shared

    opts = shared.cmd_opts
    return bool(demo is None or getattr(opts, "nowebui", False) or getattr(opts, "api", False)
                or option(OPT_API_ENABLED, False))


def on_app_started(demo, app) -> None:
    """API routes: ``version`` always; the job routes as ``api_jobs_enabled`` says, behind the
    WebUI's ``--api-auth`` credentials when it has them."""
    from modules import shared

    from .api import parse_credentials, register_routes

    h = host()
    h.refresh_paths()
    h.policy = h.policy or h.api_policy()
    credentials = parse_credentials(getattr(shared.cmd_opts, "api_auth", None))
    h.jobs = register_routes(app, h.runner, h.policy, need_sd_checkpoint=False, jobs=h.jobs,
                             jobs_enabled=api_jobs_enabled(demo), credentials=credentials)


def register() -> None:
    """Called once by the ``scripts/`` entry at WebUI start (and on "Reload UI")."""
    from modules import script_callbacks

    script_callbacks.on_ui_settings(on_ui_settings, name="wav2lip_uhq_settings")
    script_callbacks.on_ui_settings(on_memory_settings, name="wav2lip_uhq_memory_settings")
    script_callbacks.on_script_unloaded(release_models, name="wav2lip_uhq_release")  # Reload UI
    try:
        _follow_webui_unload()
    except Exception as exc:  # noqa: BLE001 - an unusual WebUI: models are then released only by the setting
        log.warning("wav2lip-uhq: cannot follow the WebUI's model unload: %s", exc)
    script_callbacks.on_ui_tabs(on_ui_tabs, name="wav2lip_uhq_tab")
    script_callbacks.on_after_component(on_after_component, name="wav2lip_uhq_send_to")
    script_callbacks.on_app_started(on_app_started, name="wav2lip_uhq_api")


__all__ = ["TAB_ID", "TAB_TITLE", "WebUIHost", "host", "host_paths", "keep_models", "on_app_started",
           "on_memory_settings", "on_ui_settings", "on_ui_tabs", "register", "release_models", "webui_job"]
