"""A fake of the AUTOMATIC1111 WebUI 1.10.1 / Forge modules and their ControlNet, for tests.

Real ``.py`` files laid out like the WebUI, so the glue imports them the way it imports the real
ones:

- ``common/modules/``: ``modules.*`` (shared, options, shared_state, processing, scripts,
  script_callbacks, call_queue, paths, devices, sd_samplers, sd_schedulers, sd_models,
  extensions, errors, images, ...) with the 1.10.1 signatures; ``modules._fake`` is the fake's
  own config and call log.
- ``a1111/``: the A1111 root: ``extensions/sd-webui-controlnet`` (CN v1.1.455, API 3).
- ``forge/``: the Forge root: ``modules_forge/`` and ``extensions-builtin/sd_forge_controlnet``
  (``lib_controlnet``, API 2).

``install(monkeypatch, ...)`` puts them on ``sys.path``, configures them and returns handles; all
of it is undone at teardown (fake modules dropped from ``sys.modules``, ``sys.path`` restored).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
COMMON = HERE / "common"
A1111_ROOT = HERE / "a1111"
FORGE_ROOT = HERE / "forge"
A1111_CN_DIR = A1111_ROOT / "extensions" / "sd-webui-controlnet"
FORGE_CN_DIR = FORGE_ROOT / "extensions-builtin" / "sd_forge_controlnet"

DEFAULT_CN_MODELS = (
    "control_v11p_sd15_canny [d14c016b]",
    "control_v11f1p_sd15_depth [cfd03158]",
    "control_v11p_sd15_lineart [43d4be0d]",
    "control_v11f1e_sd15_tile [a371b31b]",
)

_PREFIXES = ("modules", "extensions", "lib_controlnet", "modules_forge", "internal_controlnet")


def _is_fake(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _PREFIXES)


def purge() -> None:
    """Drop every fake (and any earlier real) WebUI module from ``sys.modules``."""
    for name in [n for n in sys.modules if _is_fake(n)]:
        del sys.modules[name]


class _AtUndo(dict):
    """``monkeypatch.setitem(_AtUndo(fn), key, v)``: monkeypatch's undo deletes the key, which runs
    ``fn``: a teardown hook with nothing but the ``monkeypatch`` fixture."""

    def __init__(self, fn):
        super().__init__()
        self._fn = fn

    def __delitem__(self, key):
        super().__delitem__(key)
        self._fn()


def _load_script_module(path: Path, basedir: Path, scripts_mod, script_loading):
    """Like ``scripts.load_scripts`` for one file: the extension dir first on ``sys.path`` and as
    ``scripts.basedir()`` while it runs, both reset afterwards (A1111)."""
    saved_path, saved_basedir = list(sys.path), scripts_mod.current_basedir
    sys.path.insert(0, str(basedir))
    scripts_mod.current_basedir = str(basedir)
    try:
        return script_loading.load_module(str(path))
    finally:
        sys.path[:] = saved_path
        scripts_mod.current_basedir = saved_basedir


def _script_classes(module, base):
    return [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, base) and v is not base
            and v.__module__ == module.__name__]


def install(monkeypatch, *, forge: bool = False, controlnet: bool = True, sd_model_loaded: bool = True,
            models_path=None, data_path=None, sd_schedulers: bool = True,
            cn_models=DEFAULT_CN_MODELS) -> SimpleNamespace:
    """Install the fake WebUI for one test.

    forge: Forge layout (``modules_forge``, built-in ``lib_controlnet``; the A1111 ControlNet
        listed but disabled, as Forge does) instead of A1111 1.10.1 + sd-webui-controlnet.
    controlnet: the ControlNet extension is installed (and its script in ``scripts_img2img``).
    sd_model_loaded: a checkpoint is loaded (A1111: ``shared.sd_model`` is a model object, else
        None; Forge: it is selected and loads at the first generation, ``shared.sd_model`` being a
        ``FakeInitialModel`` until then, and without one the generation raises ValueError).
    models_path / data_path: ``paths.models_path`` / ``paths.data_path`` (default: a temporary
        data dir, removed at teardown, with ``models/`` in it).
    sd_schedulers: WebUI >= 1.9; False: 1.8 (no ``modules.sd_schedulers``, no ``scheduler``
        field, combined sampler names like "DPM++ 2M Karras").
    cn_models: the ControlNet model names the host lists ("<stem> [<hash>]").
    """
    tmp = None
    if data_path is None:
        tmp = tempfile.mkdtemp(prefix="fake-webui-")
        data_path = tmp
    data_path = str(data_path)
    models_path = str(models_path) if models_path is not None else os.path.join(data_path, "models")
    os.makedirs(models_path, exist_ok=True)
    root = FORGE_ROOT if forge else A1111_ROOT

    purge()

    def teardown():
        purge()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    monkeypatch.setitem(_AtUndo(teardown), "installed", True)
    monkeypatch.syspath_prepend(str(COMMON))
    monkeypatch.syspath_prepend(str(root))
    if forge and controlnet:  # Forge keeps every extension dir on sys.path
        monkeypatch.syspath_prepend(str(FORGE_CN_DIR))
    if not sd_schedulers:
        monkeypatch.setitem(sys.modules, "modules.sd_schedulers", None)  # ImportError, as in 1.8

    _fake = importlib.import_module("modules._fake")
    _fake.CONFIG.update(forge=forge, sd_schedulers=sd_schedulers, controlnet=controlnet, script_path=str(root),
                        data_path=data_path, models_path=models_path)
    _fake.cn_models[:] = list(cn_models)

    mods = {name: importlib.import_module(f"modules.{name}") for name in (
        "shared", "shared_cmd_options", "options", "shared_state", "paths", "devices", "errors", "script_callbacks", "call_queue",
        "sd_models", "sd_samplers", "extensions", "images", "scripts", "script_loading", "processing",
        "ui_components", "infotext_utils")}
    if sd_schedulers:
        mods["sd_schedulers"] = importlib.import_module("modules.sd_schedulers")
    builtins = importlib.import_module("modules.processing_scripts.builtins")
    shared, scripts, ext_mod, sd_models = mods["shared"], mods["scripts"], mods["extensions"], mods["sd_models"]

    def set_sd_model(value):
        """A1111: the loaded model or None (no checkpoint). Forge: ``shared.sd_model`` is never
        None; ``value`` becomes the selected checkpoint, loaded by the next generation (a
        ``FakeInitialModel`` until then), and None means no checkpoint at all."""
        if not forge:
            sd_models.model_data.set_sd_model(value)
            return
        info = value.sd_checkpoint_info if value is not None else None
        sd_models.model_data.forge_loading_parameters = {"checkpoint_info": info}
        sd_models.model_data.forge_hash = ""
        sd_models.model_data.set_sd_model(sd_models.FakeInitialModel())

    model = None
    if sd_model_loaded:
        model = sd_models.FakeSDModel()
        model.sd_checkpoint_info.register()
        shared.opts.data["sd_model_checkpoint"] = model.sd_checkpoint_info.title
    set_sd_model(model)

    # extensions
    Extension = ext_mod.Extension
    exts = [Extension("soft-inpainting", str(root / "extensions-builtin" / "soft-inpainting"), is_builtin=True),
            Extension("Lora", str(root / "extensions-builtin" / "Lora"), is_builtin=True)]
    cn_module = None
    external_code = global_state = None
    if forge:
        # Forge force-disables sd-webui-controlnet (modules_forge/config.py)
        exts.append(Extension("sd-webui-controlnet", os.path.join(data_path, "extensions", "sd-webui-controlnet"),
                              enabled=False))
        if controlnet:
            exts.append(Extension("sd_forge_controlnet", str(FORGE_CN_DIR), is_builtin=True))
    elif controlnet:
        exts.append(Extension("sd-webui-controlnet", str(A1111_CN_DIR)))
    ext_mod.extensions[:] = exts

    if controlnet:
        section = ("control_net", "ControlNet")
        info = shared.OptionInfo
        shared.opts.add_option("control_net_unit_count", info(3, "Multi-ControlNet: unit number", section=section))
        shared.opts.add_option("control_net_model_cache_size", info(2 if not forge else 5, "Model cache size",
                                                                    section=section))
        shared.opts.add_option("control_net_no_detectmap", info(False, "Do not append detectmap to output",
                                                                section=section))
        shared.opts.add_option("control_net_allow_script_control",
                               info(False, "Allow other script to control this extension", section=section))
        cn_dir = FORGE_CN_DIR if forge else A1111_CN_DIR
        cn_module = _load_script_module(cn_dir / "scripts" / "controlnet.py", cn_dir, scripts,
                                        mods["script_loading"])
        if forge:
            external_code = importlib.import_module("lib_controlnet.external_code")
            global_state = importlib.import_module("lib_controlnet.global_state")
        else:
            external_code = importlib.import_module("internal_controlnet.external_code")
            external_code.get_models(update=True)  # CN scans its model folders at startup

    # script runners, as after the UI / API initialised them
    sampler_defaults = [20, "DPM++ 2M", "Automatic"] if sd_schedulers else [20, "DPM++ 2M Karras"]
    runners = {}
    for is_img2img in (False, True):
        runner = scripts.ScriptRunner()
        runner.add_script(builtins.ScriptSeed(), [-1, False, -1, 0, 0, 0], is_img2img=is_img2img)
        runner.add_script(builtins.ScriptSampler(), sampler_defaults, is_img2img=is_img2img)
        if cn_module is not None:
            (cls,) = _script_classes(cn_module, scripts.Script)
            cn = cls()
            cn.filename = str(Path(cn_module.__file__))
            runner.add_script(cn, cn.ui(is_img2img), is_img2img=is_img2img)
        runner.add_script(builtins.SoftInpainting(), [False], is_img2img=is_img2img)
        runner.warm_cache()
        runners[is_img2img] = runner
    scripts.scripts_txt2img, scripts.scripts_img2img = runners[False], runners[True]
    cn_script = None
    if controlnet:
        cn_script = next(s for s in scripts.scripts_img2img.alwayson_scripts if s.title() == "ControlNet")

    def load_extension(ext_dir, name=None):
        """Load an extension like the WebUI at startup: ``preload.py`` (its flags' defaults
        into ``cmd_opts``), then each ``scripts/*.py`` (``scripts.basedir()`` = the extension dir
        while it runs); ``Script`` subclasses are added to both runners. Returns the modules."""
        ext_dir = Path(ext_dir)
        ext = Extension(name or ext_dir.name, str(ext_dir))
        ext_mod.extensions.append(ext)
        preload = ext_dir / "preload.py"
        if preload.is_file():
            module = mods["script_loading"].load_module(str(preload))
            module.preload(shared.parser)
            defaults, _ = shared.parser.parse_known_args([])
            for k, v in vars(defaults).items():
                if not hasattr(shared.cmd_opts, k):
                    setattr(shared.cmd_opts, k, v)
        loaded = []
        for path in ext.list_files("scripts", ".py"):
            module = _load_script_module(Path(path), ext_dir, scripts, mods["script_loading"])
            loaded.append(module)
            for cls in _script_classes(module, scripts.Script):
                for is_img2img, runner in runners.items():
                    script = cls()
                    script.filename = path
                    runner.add_script(script, (), is_img2img=is_img2img)
        return loaded

    return SimpleNamespace(
        forge=forge,
        root=root,
        data_path=data_path,
        models_path=models_path,
        modules=SimpleNamespace(**mods),
        shared=shared,
        opts=shared.opts,
        cmd_opts=shared.cmd_opts,
        state=shared.state,
        processing=mods["processing"],
        scripts=scripts,
        script_callbacks=mods["script_callbacks"],
        call_queue=mods["call_queue"],
        queue_lock=mods["call_queue"].queue_lock,  # a FIFOLock: no locked(); see lock_held()
        lock_held=lambda: _fake.lock_held(mods["call_queue"].queue_lock),
        extensions=ext_mod,
        sd_model=model,
        set_sd_model=set_sd_model,
        external_code=external_code,  # the host's ControlNet external_code (None without CN)
        global_state=global_state,  # Forge's lib_controlnet.global_state (None on A1111)
        cn_script=cn_script,  # the ControlNet script object in scripts_img2img
        cn_models=_fake.cn_models,  # mutable: names added here appear after the host rescans
        cn_model_loads=_fake.cn_model_loads,  # ControlNet models built from disk (A1111 CN cache misses)
        sd_model_loads=_fake.sd_model_loads,  # checkpoints Forge loaded at a generation
        sd_model_unloads=_fake.sd_model_unloads,  # sd_models.unload_model_weights calls
        calls=_fake.calls,  # process_images records: p, lock_held, override_settings, opts_during, ...
        cn_calls=_fake.cn_calls,  # ControlNet process records: host, p, units, images, script
        script_calls=_fake.script_calls,  # (title, hook) of the other always-on scripts that ran
        reported=_fake.reported,  # errors.report / display messages (script errors are only reported)
        saved_images=_fake.saved_images,  # images.save_image calls
        hooks=_fake.hooks,  # before_sample(p) / after_sample(p, image) inside process_images
        fake_delta=mods["processing"].FAKE_DELTA,
        load_extension=load_extension,
    )
