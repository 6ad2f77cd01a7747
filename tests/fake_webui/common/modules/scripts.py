"""``modules/scripts.py`` of WebUI 1.10.1: ``Script``, ``AlwaysVisible``, ``basedir()`` and the
``ScriptRunner`` behind txt2img / img2img (``install`` builds ``scripts_img2img``).

As in the WebUI, the runner caches the per-hook script lists in ``callback_map`` (filled by the
first generation): a ``copy.copy`` of the runner shares that dict unless it is replaced.
"""

# ruff: noqa: BLE001 - like the WebUI, any exception is reported and processing goes on

from __future__ import annotations

import os
from collections import namedtuple

from modules import errors, paths

AlwaysVisible = object()


class MaskBlendArgs:
    def __init__(self, current_latent, nmask, init_latent, mask, blended_latent, denoiser=None, sigma=None):
        self.current_latent = current_latent
        self.nmask = nmask
        self.init_latent = init_latent
        self.mask = mask
        self.blended_latent = blended_latent
        self.denoiser = denoiser
        self.sigma = sigma


class PostprocessImageArgs:
    def __init__(self, image):
        self.image = image


class PostprocessBatchListArgs:
    def __init__(self, images):
        self.images = images


class Script:
    name = None
    section = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname = None
    group = None
    create_group = True
    infotext_fields = None
    paste_field_names = None
    api_info = None
    on_before_component_elem_id = None
    on_after_component_elem_id = None
    setup_for_ui_only = False
    controls = None
    sorting_priority = 0

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def after_extra_networks_activate(self, p, *args, **kwargs):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch_list(self, p, pp, *args, **kwargs):
        pass

    def post_sample(self, p, ps, *args):
        pass

    def on_mask_blend(self, p, mba, *args):
        pass

    def postprocess_image(self, p, pp, *args):
        pass

    def postprocess_maskoverlay(self, p, ppmo, *args):
        pass

    def postprocess_image_after_composite(self, p, pp, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def before_component(self, component, **kwargs):
        pass

    def after_component(self, component, **kwargs):
        pass

    def on_before_component(self, callback, *, elem_id):
        if self.on_before_component_elem_id is None:
            self.on_before_component_elem_id = []
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback, *, elem_id):
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))

    def describe(self):
        return ""

    def elem_id(self, item_id):
        need_tabname = self.show(True) == self.show(False)
        tabkind = 'img2img' if self.is_img2img else 'txt2img'
        tabname = f"{tabkind}_" if need_tabname else ""
        title = "".join(c for c in self.title().lower().replace(" ", "_") if c.isalnum() or c == "_")
        return f'script_{tabname}{title}_{item_id}'

    def before_hr(self, p, *args):
        pass


class ScriptBuiltinUI(Script):
    setup_for_ui_only = True


current_basedir = paths.script_path


def basedir():
    """The extension's directory while its scripts load; the WebUI root afterwards."""
    return current_basedir


ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data: list[ScriptClassData] = []


def list_scripts(scriptdirname, extension, *, include_extensions=True):
    from modules import extensions

    res = []
    basedir_ = os.path.join(paths.script_path, scriptdirname)
    if os.path.exists(basedir_):
        res += [ScriptFile(paths.script_path, f, os.path.join(basedir_, f)) for f in sorted(os.listdir(basedir_))]
    if include_extensions:
        for ext in extensions.active():
            res += [ScriptFile(ext.path, os.path.basename(f), f) for f in ext.list_files(scriptdirname, extension)]
    return [x for x in res if os.path.splitext(x.path)[1].lower() == extension and os.path.isfile(x.path)]


class _Component:
    """Stands for a gradio component in ``ScriptRunner.inputs`` (only ``.value`` is read)."""

    def __init__(self, value, label=""):
        self.value = value
        self.label = label


_HOOKS = ("setup", "before_process", "process", "before_process_batch", "process_before_every_sampling",
          "process_batch", "postprocess_batch", "postprocess_image", "postprocess", "before_hr")


class ScriptRunner:
    def __init__(self):
        self.scripts = []
        self.selectable_scripts = []
        self.alwayson_scripts = []
        self.titles = []
        self.title_map = {}
        self.infotext_fields = []
        self.paste_field_names = []
        self.inputs = [None]
        self.callback_map = {}
        self.on_before_component_elem_id = {}
        self.on_after_component_elem_id = {}

    def add_script(self, script, values=(), *, is_img2img=True):
        """Fake-only: register ``script`` as if initialize_scripts + setup_ui had run, its UI
        producing components with ``values`` (the defaults the API would send)."""
        script.is_img2img = is_img2img
        script.is_txt2img = not is_img2img
        script.tabname = "img2img" if is_img2img else "txt2img"
        visibility = script.show(is_img2img)
        if visibility is AlwaysVisible:
            self.scripts.append(script)
            self.alwayson_scripts.append(script)
            script.alwayson = True
        elif visibility:
            self.scripts.append(script)
            self.selectable_scripts.append(script)
            self.titles.append(script.title())
        else:
            return
        self.title_map[script.title().lower()] = script
        script.name = script.title().lower()
        script.args_from = len(self.inputs)
        self.inputs += [_Component(v) for v in values]
        script.args_to = len(self.inputs)
        if self.inputs[0] is None:
            self.inputs[0] = _Component("None", "Script")
        self.callback_map.clear()

    def ordered_scripts(self, name):
        """The always-on scripts that implement ``name``; cached in ``callback_map``."""
        key = "script_" + name
        cached = self.callback_map.get(key)
        if cached is None:
            cached = [s for s in self.alwayson_scripts if getattr(type(s), name, None) is not getattr(Script, name)]
            self.callback_map[key] = cached
        return cached

    def warm_cache(self):
        """Fake-only: what the first generation leaves behind."""
        for name in _HOOKS:
            self.ordered_scripts(name)

    def _each(self, name, p, *args, **kwargs):
        for script in self.ordered_scripts(name):
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                getattr(script, name)(p, *args, *script_args, **kwargs)
            except Exception:
                errors.report(f"Error running {name}: {script.filename}", exc_info=True)

    def setup_scrips(self, p, *, is_ui=True):
        for script in self.ordered_scripts('setup'):
            if not is_ui and script.setup_for_ui_only:
                continue
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                script.setup(p, *script_args)
            except Exception:
                errors.report(f"Error running setup: {script.filename}", exc_info=True)

    def run(self, p, *args):
        script_index = args[0]
        if script_index == 0 or script_index is None:
            return None
        script = self.selectable_scripts[script_index - 1]
        return script.run(p, *args[script.args_from:script.args_to])

    def before_process(self, p):
        self._each("before_process", p)

    def process(self, p):
        self._each("process", p)

    def before_process_batch(self, p, **kwargs):
        self._each("before_process_batch", p, **kwargs)

    def process_before_every_sampling(self, p, **kwargs):
        self._each("process_before_every_sampling", p, **kwargs)

    def process_batch(self, p, **kwargs):
        self._each("process_batch", p, **kwargs)

    def postprocess_batch(self, p, images, **kwargs):
        self._each("postprocess_batch", p, images=images, **kwargs)

    def postprocess_image(self, p, pp: PostprocessImageArgs):
        self._each("postprocess_image", p, pp)

    def postprocess(self, p, processed):
        self._each("postprocess", p, processed)

    def before_hr(self, p):
        self._each("before_hr", p)

    def script(self, title):
        return self.title_map.get(title.lower())


scripts_txt2img: ScriptRunner | None = None
scripts_img2img: ScriptRunner | None = None
scripts_current: ScriptRunner | None = None
