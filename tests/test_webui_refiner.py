"""The WebUI refinement backend against the fake WebUI (A1111 1.10.1 + sd-webui-controlnet, Forge).

The fake (``tests/fake_webui``) keeps the WebUI's contracts: dataclass constructors, the
``p.scripts`` setter running the always-on ``setup`` unless ``p.is_api``, ``override_settings``,
interrupt flags, the mask overlay, ControlNet's unit defaults and model lists; its "diffusion"
adds ``FAKE_DELTA`` to every repainted pixel.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from fake_webui import DEFAULT_CN_MODELS, install

from wav2lip_uhq.errors import Cancelled, CheckpointError, InputError
from wav2lip_uhq.refine import ControlSpec, RefineBatch, RefineOptions, create_refiner

SIZE = 64
CANNY = "control_v11p_sd15_canny [d14c016b]"


def make_options(**kw) -> RefineOptions:
    args = {"size": SIZE, "steps": 12, "cfg": 4.5, "denoise": 0.4, "seed": 1234, "sampler": "dpm++_2m_karras",
            "prompt": "a mouth", "negative_prompt": "blurry",
            "controlnets": (ControlSpec("control_v11p_sd15_canny", "canny", weight=0.8, guidance_start=0.1,
                                        guidance_end=0.9),)}
    args.update(kw)
    return RefineOptions(**args)


def make_batch(n: int = 2, n_cn: int = 1, seeds=(11, 22), cancel=None):
    rng = np.random.default_rng(0)
    images = [rng.integers(20, 200, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n)]
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = (((yy - 40) / 12.0) ** 2 + ((xx - 32) / 20.0) ** 2 <= 1).astype(np.float32)
    masks = [mask.copy() for _ in range(n)]
    controls = [[rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n)] for _ in range(n_cn)]
    steps = []
    batch = RefineBatch(images, masks, controls, list(seeds[:n]), lambda s, t: steps.append((s, t)), cancel)
    return batch, steps


def runner_snapshot(web):
    runner = web.scripts.scripts_img2img
    return ([id(s) for s in runner.alwayson_scripts], [(s.args_from, s.args_to) for s in runner.alwayson_scripts],
            {k: [id(s) for s in v] for k, v in runner.callback_map.items()})


def assert_refined_inside_mask(web, batch, out):
    assert len(out) == len(batch.images)
    for crop, mask, res in zip(batch.images, batch.masks, out):
        assert res.shape == crop.shape and res.dtype == np.uint8
        inside = mask > 0.5
        np.testing.assert_array_equal(res[~inside], crop[~inside])  # untouched outside the mask
        np.testing.assert_array_equal(res[inside], crop[inside].astype(int) + web.fake_delta)


# -- the backend ---------------------------------------------------------------------------------
@pytest.mark.parametrize("forge", [False, True], ids=["a1111", "forge"])
def test_refine_with_controlnet(monkeypatch, forge):
    web = install(monkeypatch, forge=forge)
    web.opts.save_init_img = True  # the user's settings, which must not leak into our runs
    web.opts.img2img_color_correction = True
    web.state.job_count, web.state.job_no, web.state.textinfo = 100, 7, "the caller's job"
    before = runner_snapshot(web)

    refiner = create_refiner(make_options(), backend="webui")
    batch, steps = make_batch()
    out = refiner.refine(batch)

    assert_refined_inside_mask(web, batch, out)
    assert steps == [(1, 2), (2, 2)]
    assert len(web.calls) == 2
    for i, call in enumerate(web.calls):
        p = call["p"]
        assert call["lock_held"]
        assert (p.seed, p.steps, p.cfg_scale, p.denoising_strength) == (batch.seeds[i], 12, 4.5, 0.4)
        assert (call["sampler_name"], call["scheduler"]) == ("DPM++ 2M", "Karras")
        assert (p.prompt, p.negative_prompt) == ("a mouth", "blurry")
        assert p.is_api and p.fake_setup_is_ui is False  # is_api was set before the scripts
        assert p.do_not_save_samples and p.do_not_save_grid
        assert p.inpainting_fill == 1 and p.inpaint_full_res is False and (p.width, p.height) == (SIZE, SIZE)
        assert p.override_settings_restore_afterwards
        assert call["opts_during"]["save_init_img"] is False
        assert call["opts_during"]["img2img_color_correction"] is False
        assert call["opts_during"]["control_net_no_detectmap"] is True
        assert p.closed
        assert [s.title() for s in p.scripts.alwayson_scripts] == ["ControlNet"]
    assert len(web.cn_calls) == 2
    for i, rec in enumerate(web.cn_calls):
        assert rec["host"] == ("forge" if forge else "a1111")
        (unit,) = rec["units"]
        assert unit.enabled is True
        assert unit.model == CANNY
        assert unit.module == ("None" if forge else "none")
        assert (unit.weight, unit.guidance_start, unit.guidance_end) == (0.8, 0.1, 0.9)
        assert unit.save_detected_map is False
        np.testing.assert_array_equal(rec["images"][0], batch.controls[0][i])
        assert rec["script"] is not web.cn_script  # a copy, never the WebUI's own object

    assert web.script_calls == []  # Seed, Sampler, soft inpainting never ran
    assert web.reported == []  # no script error (those are only logged by the WebUI)
    assert web.saved_images == []
    assert runner_snapshot(web) == before
    assert web.opts.save_init_img is True and web.opts.img2img_color_correction is True
    assert (web.state.job_count, web.state.job_no, web.state.textinfo) == (100, 7, "the caller's job")
    assert not web.lock_held()


def test_two_controlnets_get_their_own_images(monkeypatch):
    web = install(monkeypatch)
    specs = (ControlSpec("control_v11p_sd15_canny.pth", "canny", weight=1.2),
             ControlSpec("models/ControlNet/control_v11f1e_sd15_tile.safetensors", "tile", weight=0.5))
    refiner = create_refiner(make_options(controlnets=specs), backend="webui")
    batch, _ = make_batch(n=1, n_cn=2)
    refiner.refine(batch)
    (rec,) = web.cn_calls
    assert [u.model for u in rec["units"]] == [CANNY, "control_v11f1e_sd15_tile [a371b31b]"]
    assert [u.weight for u in rec["units"]] == [1.2, 0.5]
    for k in range(2):
        np.testing.assert_array_equal(rec["images"][k], batch.controls[k][0])


def test_without_controlnet_no_always_on_script(monkeypatch):
    web = install(monkeypatch, controlnet=False)
    refiner = create_refiner(make_options(controlnets=(), sampler="euler_a"), backend="webui")
    batch, _ = make_batch()
    out = refiner.refine(batch)
    assert_refined_inside_mask(web, batch, out)
    assert all(c["p"].scripts.alwayson_scripts == [] for c in web.calls)
    assert web.scripts.scripts_img2img.alwayson_scripts  # the WebUI's own runner is intact
    assert [(c["sampler_name"], c["scheduler"]) for c in web.calls] == [("Euler a", "Automatic")] * 2
    assert "control_net_no_detectmap" not in web.calls[0]["override_settings"]  # not a setting here
    assert web.script_calls == [] and web.reported == []


def test_no_model_loaded_is_a_clear_error(monkeypatch):
    web = install(monkeypatch, sd_model_loaded=False)
    refiner = create_refiner(make_options(), backend="webui")
    with pytest.raises(CheckpointError, match="Stable Diffusion checkpoint' menu") as err:
        refiner.refine(make_batch()[0])
    assert "no checkpoint is loaded" in str(err.value)
    assert web.calls == []
    assert not web.lock_held()


@pytest.mark.parametrize("when", ["before", "during", "stop", "cancel"])
def test_interrupt_cancels_and_restores(monkeypatch, when):
    web = install(monkeypatch)
    web.opts.save_init_img = True
    web.state.job_count, web.state.job_no, web.state.textinfo = 50, 3, "caller"
    before = runner_snapshot(web)
    cancel = None
    if when == "before":
        web.state.interrupt()
    elif when == "during":  # Interrupt pressed while the first crop samples: a partial image
        web.hooks["before_sample"] = lambda p: web.state.interrupt()
    elif when == "stop":
        web.hooks["before_sample"] = lambda p: web.state.stop_generating()
    else:
        cancel = lambda: len(web.calls) >= 1
    refiner = create_refiner(make_options(), backend="webui")
    batch, steps = make_batch(cancel=cancel)
    with pytest.raises(Cancelled):
        refiner.refine(batch)
    assert len(web.calls) == (0 if when == "before" else 1)
    assert steps == ([(1, 2)] if when == "cancel" else [])
    assert (web.state.job_count, web.state.job_no, web.state.textinfo) == (50, 3, "caller")
    assert web.opts.save_init_img is True
    assert runner_snapshot(web) == before
    assert not web.lock_held()


def test_skip_keeps_the_crop_unrefined(monkeypatch):
    web = install(monkeypatch)
    web.hooks["before_sample"] = lambda p: web.state.skip() if len(web.calls) == 1 else None
    batch, _ = make_batch()
    out = create_refiner(make_options(), backend="webui").refine(batch)
    np.testing.assert_array_equal(out[0], batch.images[0])
    assert not np.array_equal(out[1], batch.images[1])
    assert web.state.skipped is False


def test_error_inside_process_images_restores_settings(monkeypatch):
    web = install(monkeypatch)
    web.opts.save_init_img = True
    web.opts.img2img_color_correction = True
    web.state.job_count, web.state.textinfo = 9, "caller"

    def boom(p):
        raise RuntimeError("CUDA out of memory")

    web.hooks["before_sample"] = boom
    refiner = create_refiner(make_options(), backend="webui")
    with pytest.raises(RuntimeError, match="out of memory"):
        refiner.refine(make_batch()[0])
    (call,) = web.calls
    assert call["opts_during"]["save_init_img"] is False  # the override was in force inside
    assert web.opts.save_init_img is True and web.opts.img2img_color_correction is True
    assert (web.state.job_count, web.state.textinfo) == (9, "caller")
    assert call["p"].closed
    assert not web.lock_held()


@pytest.mark.parametrize("forge", [False, True], ids=["a1111", "forge"])
def test_controlnet_requested_but_absent(monkeypatch, forge):
    install(monkeypatch, forge=forge, controlnet=False)
    with pytest.raises(InputError, match="no ControlNet is active") as err:
        create_refiner(make_options(), backend="webui")
    assert "control_v11p_sd15_canny" in str(err.value) and "sd-webui-controlnet" in str(err.value)


@pytest.mark.parametrize("forge", [False, True], ids=["a1111", "forge"])
def test_unknown_controlnet_model_lists_the_available_ones(monkeypatch, forge):
    install(monkeypatch, forge=forge)
    options = make_options(controlnets=(ControlSpec("control_v11p_sd15_openpose"),))
    with pytest.raises(CheckpointError, match="control_v11p_sd15_openpose") as err:
        create_refiner(options, backend="webui")
    for name in DEFAULT_CN_MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize("forge", [False, True], ids=["a1111", "forge"])
def test_model_added_after_startup_is_found_by_a_rescan(monkeypatch, forge):
    web = install(monkeypatch, forge=forge)
    web.cn_models.append("control_v11p_sd15_openpose [cab727d4]")  # dropped in models/ControlNet later
    refiner = create_refiner(make_options(controlnets=(ControlSpec("control_v11p_sd15_openpose"),)),
                             backend="webui")
    refiner.refine(make_batch(n=1)[0])
    assert web.cn_calls[0]["units"][0].model == "control_v11p_sd15_openpose [cab727d4]"
    assert web.reported == []


def test_controlnet_model_name_matching():
    from wav2lip_uhq.refine.webui_backend import match_controlnet_model

    names = ["None", *DEFAULT_CN_MODELS, "control_v11p_sd15_canny [0badc0de]"]
    assert match_controlnet_model(CANNY, names) == CANNY
    assert match_controlnet_model("control_v11p_sd15_canny [0BADC0DE]", names) == "control_v11p_sd15_canny [0badc0de]"
    assert match_controlnet_model("/x/models/ControlNet/Control_v11p_sd15_canny.pth", names) == CANNY
    assert match_controlnet_model(r"C:\models\control_v11f1e_sd15_tile.safetensors", names) == \
        "control_v11f1e_sd15_tile [a371b31b]"
    assert match_controlnet_model("lineart", names) == "control_v11p_sd15_lineart [43d4be0d]"
    assert match_controlnet_model("openpose", names) is None
    assert match_controlnet_model("None", names) is None
    with pytest.raises(CheckpointError, match="ambiguous"):
        match_controlnet_model("sd15", names)


def test_legacy_webui_without_sd_schedulers(monkeypatch):
    web = install(monkeypatch, sd_schedulers=False)
    with pytest.raises(ImportError):
        import modules.sd_schedulers  # noqa: F401
    refiner = create_refiner(make_options(), backend="webui")
    batch, _ = make_batch()
    out = refiner.refine(batch)
    assert_refined_inside_mask(web, batch, out)
    p = web.calls[0]["p"]
    assert p.sampler_name == "DPM++ 2M Karras"
    assert not hasattr(p, "scheduler")
    assert web.reported == []


def test_sampler_mapping(monkeypatch):
    from wav2lip_uhq.refine.webui_backend import webui_sampler

    install(monkeypatch)
    assert webui_sampler("dpm++_2m_karras") == ("DPM++ 2M", "Karras")
    assert webui_sampler("dpm++_2m") == ("DPM++ 2M", "Uniform")
    assert webui_sampler("euler_a") == ("Euler a", "Automatic")
    assert webui_sampler("lcm") == ("LCM", "Automatic")
    assert webui_sampler("DDIM") == ("DDIM", "Automatic")
    assert webui_sampler("DPM++ 2M Karras") == ("DPM++ 2M", "Karras")  # a WebUI name, with its schedule
    assert webui_sampler("DPM++ SDE Karras") == ("DPM++ SDE", "Karras")
    assert webui_sampler("k_euler") == ("Euler", "Automatic")  # an alias
    with pytest.raises(ValueError, match="available: .*Euler a"):
        webui_sampler("heunpp2")


def test_sampler_mapping_legacy(monkeypatch):
    from wav2lip_uhq.refine.webui_backend import webui_sampler

    install(monkeypatch, sd_schedulers=False)
    assert webui_sampler("dpm++_2m_karras") == ("DPM++ 2M Karras", None)
    assert webui_sampler("dpm++_2m") == ("DPM++ 2M", None)
    assert webui_sampler("euler_a") == ("Euler a", None)
    assert webui_sampler("lcm") == ("LCM", None)
    assert webui_sampler("DPM++ SDE Karras") == ("DPM++ SDE Karras", None)


def test_waits_for_the_queue_lock(monkeypatch):
    web = install(monkeypatch)
    refiner = create_refiner(make_options(), backend="webui")
    batch, _ = make_batch(n=1)
    done = threading.Event()
    web.queue_lock.acquire()  # another generation is running
    try:
        t = threading.Thread(target=lambda: (refiner.refine(batch), done.set()), daemon=True)
        t.start()
        time.sleep(0.3)
        assert web.calls == [] and not done.is_set()
    finally:
        web.queue_lock.release()
    t.join(30)
    assert done.is_set() and web.calls[0]["lock_held"]


def test_caller_holding_the_lock_does_not_deadlock(monkeypatch):
    web = install(monkeypatch)
    refiner = create_refiner(make_options(), backend="webui", hold_queue_lock=False)
    batch, _ = make_batch()
    result = {}
    job = web.call_queue.wrap_queued_call(lambda: result.setdefault("out", refiner.refine(batch)))
    t = threading.Thread(target=job, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "deadlock"
    assert len(result["out"]) == 2
    assert all(c["lock_held"] for c in web.calls)  # held by the caller
    assert not web.lock_held()


def test_output_resized_to_the_crop(monkeypatch):
    web = install(monkeypatch)
    web.hooks["after_sample"] = lambda p, image: image.resize((SIZE // 2, SIZE // 2))  # a host that rescales
    out = create_refiner(make_options(), backend="webui").refine(make_batch(n=1)[0])
    assert out[0].shape == (SIZE, SIZE, 3) and out[0].dtype == np.uint8


def test_a1111_controlnet_found_by_path_when_extensions_is_not_importable(monkeypatch):
    web = install(monkeypatch)
    monkeypatch.setitem(sys.modules, "extensions", None)  # e.g. --data-dir elsewhere
    refiner = create_refiner(make_options(), backend="webui")
    refiner.refine(make_batch(n=1)[0])
    assert web.cn_calls[0]["units"][0].model == CANNY


def test_create_refiner_webui(monkeypatch):
    from wav2lip_uhq.refine.webui_backend import WebUIRefiner

    install(monkeypatch)
    refiner = create_refiner(make_options(), backend="webui", hold_queue_lock=False)
    assert isinstance(refiner, WebUIRefiner) and refiner.hold_queue_lock is False
    assert refiner.options.steps == 12
    with pytest.raises(TypeError):
        create_refiner(make_options(), backend="diffusers", hold_queue_lock=False)
    with pytest.raises(ValueError):
        create_refiner(make_options(), backend="comfy")


def test_backend_imports_without_the_webui():
    code = ("import sys, wav2lip_uhq.refine.webui_backend as w; "
            "assert not [m for m in sys.modules if m == 'modules' or m.startswith('modules.')]; "
            "assert 'torch' not in sys.modules; print(w.WebUIRefiner.__name__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "WebUIRefiner"


# -- the fake keeps the WebUI's contracts ----------------------------------------------------------
def _p(web, **kw):
    from PIL import Image

    args = {"prompt": "x", "init_images": [Image.new("RGB", (SIZE, SIZE), (100, 100, 100))], "width": SIZE,
            "height": SIZE, "steps": 12, "sampler_name": "Euler", "denoising_strength": 0.5}
    args.update(kw)
    return web.processing.StableDiffusionProcessingImg2Img(**args)


def test_fake_processing_contracts(monkeypatch):
    web = install(monkeypatch)
    with pytest.raises(TypeError):
        _p(web, not_a_field=1)
    # the full runner without is_api: the Seed / Sampler scripts overwrite our values
    p = _p(web, seed=5)
    p.scripts = web.scripts.scripts_img2img
    p.script_args = [c.value for c in web.scripts.scripts_img2img.inputs]
    assert (p.steps, p.sampler_name, p.seed) == (20, "DPM++ 2M", -1)
    p = _p(web, seed=5)
    p.is_api = True
    p.scripts = web.scripts.scripts_img2img
    p.script_args = [c.value for c in web.scripts.scripts_img2img.inputs]
    assert (p.steps, p.sampler_name, p.seed) == (12, "Euler", 5)
    # a copied runner keeps the shared callback cache: every always-on script still runs
    runner = copy.copy(web.scripts.scripts_img2img)
    runner.alwayson_scripts = []
    p = _p(web)
    p.is_api = True
    p.scripts, p.script_args = runner, [c.value for c in web.scripts.scripts_img2img.inputs]
    web.processing.process_images(p)
    assert ("Soft Inpainting", "process") in web.script_calls
    # interrupted before sampling: no image; settings restored after an error
    web.state.interrupt()
    assert web.processing.process_images(_p(web)).images == []
    web.state.interrupted = False
    web.hooks["before_sample"] = lambda p: 1 / 0
    with pytest.raises(ZeroDivisionError):
        web.processing.process_images(_p(web, override_settings={"save_init_img": True}))
    assert web.opts.save_init_img is False
    web.hooks["before_sample"] = None
    # "Only masked" keeps the init size; "whole picture" gives width x height
    from PIL import Image

    mask = Image.new("L", (96, 96), 0)
    mask.paste(255, (30, 30, 60, 60))
    big = [Image.new("RGB", (96, 96), (50, 60, 70))]
    full = web.processing.process_images(_p(web, init_images=big, mask=mask, inpaint_full_res=True))
    whole = web.processing.process_images(_p(web, init_images=big, mask=mask, inpaint_full_res=False))
    assert full.images[0].size == (96, 96) and whole.images[0].size == (SIZE, SIZE)
    web.set_sd_model(None)
    assert web.shared.sd_model is None
    with pytest.raises(AttributeError):
        web.processing.process_images(_p(web))


def test_fake_controlnet_contracts(monkeypatch):
    web = install(monkeypatch)
    ec = web.external_code
    assert ec.get_api_version() == 3
    assert ec.ControlNetUnit().enabled is False
    assert ec.ControlNetUnit(low_vram=True, whatever=1).low_vram is True  # extra keys ignored
    with pytest.raises(ValueError):
        ec.ControlNetUnit(module="no_such_module")
    assert ec.find_cn_script(web.scripts.scripts_img2img) is web.cn_script
    assert CANNY in ec.get_models() and "none" in ec.get_modules()
    # update_cn_script_in_processing shifts the shared scripts' slices
    soft = web.scripts.scripts_img2img.alwayson_scripts[-1]
    p = _p(web)
    p.is_api = True
    p.scripts = web.scripts.scripts_img2img
    p.script_args = [c.value for c in web.scripts.scripts_img2img.inputs]
    ec.update_cn_script_in_processing(p, [ec.ControlNetUnit()] * 5)
    assert (web.cn_script.args_to, soft.args_from) == (15, 15)

    monkeypatch.undo()
    web = install(monkeypatch, forge=True)
    import modules_forge  # noqa: F401
    from lib_controlnet import external_code, global_state

    assert external_code.get_api_version() == 2
    assert external_code.ControlNetUnit().enabled is True
    with pytest.raises(TypeError):
        external_code.ControlNetUnit(low_vram=False)
    assert not hasattr(external_code, "find_cn_script")
    assert global_state.get_all_controlnet_names()[0] == "None"
    assert "None" in global_state.get_all_preprocessor_names()
    assert [e.name for e in web.extensions.active()] == ["soft-inpainting", "Lora", "sd_forge_controlnet"]


def test_fake_callbacks_and_options(monkeypatch):
    web = install(monkeypatch)
    cb, opts = web.script_callbacks, web.opts
    seen = []

    def settings():
        opts.add_option("w2l_thing", web.shared.OptionInfo(3, "Thing", section=("w2l", "W2L")).info("x").needs_reload_ui())

    cb.on_ui_settings(lambda: 1 / 0, name="broken")
    cb.on_ui_settings(settings, name="settings")
    cb.on_app_started(lambda demo, app: seen.append((demo, app)))
    cb.ui_settings_callback()  # the broken one is reported, the next one still runs
    cb.app_started_callback(None, "app")
    assert opts.w2l_thing == 3 and opts.data["w2l_thing"] == 3
    assert seen == [(None, "app")]
    assert len(web.reported) == 1
    assert [c.name.split("/")[-1] for c in cb.callback_map["callbacks_ui_settings"]] == ["broken", "settings"]
    info = web.shared.OptionInfo(1)
    assert info.info("a").needs_restart().link("l", "u").js("j", "f").html("<b/>") is info
    with pytest.raises(KeyError):
        opts.set("not_an_option", 1)


def test_refine_session_with_the_webui_backend(monkeypatch):
    from wav2lip_uhq.refine import FrameJob, RefineSession

    web = install(monkeypatch)
    refiner = create_refiner(make_options(sync_tolerance=None, batch_size=2), backend="webui")
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:40, :40]
    alpha = (((yy - 20) / 10.0) ** 2 + ((xx - 20) / 16.0) ** 2 <= 1).astype(np.float32)
    jobs = [FrameJob(rng.integers(30, 180, (120, 120, 3), dtype=np.uint8), alpha, (40, 50, 80, 90), None, i)
            for i in range(3)]
    before = [j.frame.copy() for j in jobs]
    progress = []
    pasted = RefineSession(refiner).refine(jobs, progress=lambda d, t: progress.append((d, t)))
    assert pasted == [True, True, True]
    assert len(web.calls) == 3 and len(web.cn_calls) == 3  # batches of 2 + 1 crops
    assert progress[-1] == (3, 3)
    for job, old in zip(jobs, before):
        changed = np.any(job.frame != old, axis=2)
        assert changed.any()
        assert not changed[:50].any() and not changed[:, :40].any()  # only within the roi (x 40.., y 50..)


# -- what the real WebUIs do that the code must survive ----------------------------------------------
def test_controlnet_model_loads_once_not_per_crop_or_job(monkeypatch):
    """sd-webui-controlnet clears its class-wide model cache whenever the script object's
    latest_model_hash differs from the SD model's. The img2img script object still has "" when the
    user only ran ControlNet in txt2img: a fresh copy of it per crop cleared the cache and reloaded
    the model from disk for every crop."""
    web = install(monkeypatch)
    cls = type(web.cn_script)
    assert web.cn_script.latest_model_hash == ""
    txt2img_cn = next(s for s in web.scripts.scripts_txt2img.alwayson_scripts if s.title() == "ControlNet")
    txt2img_cn.latest_model_hash = web.shared.sd_model.sd_model_hash  # the user's txt2img run
    cls.model_cache["control_v11f1p_sd15_depth [cfd03158]"] = object()
    for _job in range(2):
        refiner = create_refiner(make_options(), backend="webui")  # one refiner per job
        for _batch in range(2):
            refiner.refine(make_batch()[0])
    assert len(web.cn_calls) == 8
    assert web.cn_model_loads == [CANNY]  # once for the whole process, not 8 (per crop) or 2 (per job)
    assert len({id(rec["script"]) for rec in web.cn_calls}) == 2  # one copy per job, never the WebUI's own
    assert all(rec["script"] is not web.cn_script for rec in web.cn_calls)


def test_users_cached_controlnet_model_survives(monkeypatch):
    web = install(monkeypatch)
    cls = type(web.cn_script)
    users = cls.model_cache["control_v11f1p_sd15_depth [cfd03158]"] = object()  # the user's img2img run...
    web.cn_script.latest_model_hash = web.shared.sd_model.sd_model_hash  # ...with this SD model
    create_refiner(make_options(), backend="webui").refine(make_batch()[0])
    assert web.cn_model_loads == [CANNY]
    assert cls.model_cache.get("control_v11f1p_sd15_depth [cfd03158]") is users  # not cleared


def test_controlnet_cache_cleared_when_the_sd_model_changed(monkeypatch):
    web = install(monkeypatch)
    refiner = create_refiner(make_options(), backend="webui")
    refiner.refine(make_batch(n=1)[0])
    web.set_sd_model(web.modules.sd_models.FakeSDModel("another.safetensors"))  # the user switched
    create_refiner(make_options(), backend="webui").refine(make_batch(n=1)[0])
    assert web.cn_model_loads == [CANNY, CANNY]  # CN's own rule still holds: rebuilt for the new model


def test_frozen_settings_are_not_overridden(monkeypatch, caplog):
    """--freeze-settings: Options.__setattr__ asserts, so any override_settings would fail every
    crop (also when process_images restores them)."""
    web = install(monkeypatch)
    web.opts.save_init_img = True
    web.opts.img2img_fix_steps = True  # "exactly the steps the slider says"
    web.cmd_opts.freeze_settings = True
    p = _p(web, override_settings={"save_init_img": False})
    with pytest.raises(AssertionError, match="changing settings is disabled"):  # what the WebUI does
        web.processing.process_images(p)
    web.calls.clear()
    batch, _ = make_batch()
    with caplog.at_level("WARNING", logger="wav2lip_uhq.refine.webui_backend"):
        out = create_refiner(make_options(), backend="webui").refine(batch)
    assert_refined_inside_mask(web, batch, out)
    assert [c["override_settings"] for c in web.calls] == [{}, {}]
    assert [c["p"].steps for c in web.calls] == [int(12 * 0.4)] * 2  # the steps the diffusers backend runs
    assert "save_init_img" in caplog.text and caplog.text.count("frozen") == 1  # said once, not per crop


def test_only_differing_settings_are_overridden(monkeypatch):
    web = install(monkeypatch)
    web.opts.save_init_img = True
    web.cmd_opts.freeze_specific_settings = "img2img_color_correction"
    web.opts.data["img2img_color_correction"] = True
    create_refiner(make_options(), backend="webui").refine(make_batch(n=1)[0])
    (call,) = web.calls
    assert set(call["override_settings"]) == {"save_init_img", "control_net_no_detectmap"}
    assert web.opts.save_init_img is True


def test_forge_loads_the_selected_checkpoint_at_the_first_crop(monkeypatch):
    web = install(monkeypatch, forge=True)
    assert web.shared.sd_model is not None  # Forge: a placeholder, never None
    assert not hasattr(web.shared.sd_model, "sd_checkpoint_info")
    out = create_refiner(make_options(), backend="webui").refine(make_batch()[0])
    assert len(out) == 2 and len(web.sd_model_loads) == 1
    assert web.shared.sd_model.sd_checkpoint_info is not None


def test_forge_without_any_checkpoint_is_a_clear_error(monkeypatch):
    web = install(monkeypatch, forge=True, sd_model_loaded=False)
    assert web.shared.sd_model is not None
    with pytest.raises(ValueError, match="You do not have any model"):  # what Forge itself says
        web.processing.process_images(_p(web))
    web.calls.clear()
    with pytest.raises(CheckpointError, match="no checkpoint is loaded"):
        create_refiner(make_options(), backend="webui").refine(make_batch()[0])
    assert web.calls == []


@pytest.mark.parametrize("forge", [False, True], ids=["a1111", "forge"])
def test_all_dark_control_image(monkeypatch, forge):
    """A canny map of a crop with no edges is all zeros: Forge's get_input_data compares the
    mask of the unit's image pair, which must be there."""
    web = install(monkeypatch, forge=forge)
    batch, _ = make_batch(n=1)
    batch.controls[0][0] = np.zeros((SIZE, SIZE, 3), np.uint8)
    create_refiner(make_options(), backend="webui").refine(batch)
    assert web.reported == []
    (rec,) = web.cn_calls
    np.testing.assert_array_equal(rec["images"][0], 0)


def test_fake_forge_controlnet_reads_image_pairs_like_forge(monkeypatch):
    web = install(monkeypatch, forge=True)
    from lib_controlnet import external_code

    script, p = web.cn_script, _p(web)
    dark = np.zeros((SIZE, SIZE, 3), np.uint8)
    with pytest.raises(IndexError):  # a bare array
        script.get_input_data(p, external_code.ControlNetUnit(image=dark))
    with pytest.raises(TypeError):  # no mask, all-dark image
        script.get_input_data(p, external_code.ControlNetUnit(image={"image": dark, "mask": None}))
    unit = external_code.ControlNetUnit(image={"image": dark, "mask": np.zeros_like(dark)})
    assert script.get_input_data(p, unit) is dark


def test_a1111_controlnet_unit_is_a_pydantic_model(monkeypatch):
    from wav2lip_uhq.refine.webui_backend import _unit_fields, find_controlnet

    web = install(monkeypatch)
    cls = web.external_code.ControlNetUnit
    assert "BaseModel" in [c.__name__ for c in cls.__mro__]  # pydantic v1, as in CN 1.1.455
    fields = _unit_fields(cls)
    assert fields == set(cls.__fields__) and {"low_vram", "image", "enabled"} <= fields
    host = find_controlnet()
    unit = host.unit(enabled=True, module="none", model=CANNY, not_a_field=1, weight=0.5)
    assert isinstance(unit, cls) and unit.enabled and unit.weight == 0.5
    with pytest.raises(ValueError):  # validation: the model must be one the host lists
        host.unit(enabled=True, module="none", model="control_nothing [00000000]")
    refiner = create_refiner(make_options(), backend="webui")
    refiner.refine(make_batch(n=1)[0])
    (rec,) = web.cn_calls
    assert isinstance(rec["units"][0], cls) and rec["units"][0].low_vram is False


def test_fake_fifo_lock_is_like_the_webuis(monkeypatch):
    web = install(monkeypatch)
    lock = web.queue_lock
    assert not hasattr(lock, "locked")  # the real FIFOLock has none: code must not ask it
    with lock:
        assert web.lock_held()
        assert lock.acquire(blocking=False) is False  # not reentrant
    assert not web.lock_held()
    order = []
    lock.acquire()
    threads = []
    for i in range(3):
        ready = threading.Event()
        t = threading.Thread(target=lambda i=i, ready=ready: (ready.set(), lock.acquire(), order.append(i),
                                                               lock.release()), daemon=True)
        t.start()
        ready.wait(5)
        while len(lock._pending_threads) < i + 1:  # queued in arrival order
            time.sleep(0.001)
        threads.append(t)
    lock.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2]
