"""The option schema: every declared option reaches the CLI, the UI and the HTTP API with the same
default and the same accepted (and refused) values; the API's /schema is a real JSON Schema."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from wav2lip_uhq import options
from wav2lip_uhq.api import ApiError, ApiPolicy, client_keys, host_keys, parse_request, schema
from wav2lip_uhq.cli import build_parser
from wav2lip_uhq.cli.arguments import config_from_args
from wav2lip_uhq.config import RunConfig
from wav2lip_uhq.ui import DEFAULTS, UIInputError, config_from_ui
from wav2lip_uhq.ui_runner import UIRunner

ALL = list(options.registry().values())


def field(config, opt):
    value = config
    for name in opt.path:
        value = getattr(value, name)
    return value


@pytest.fixture
def media(tmp_path):
    face, audio = tmp_path / "media" / "face.png", tmp_path / "media" / "speech.wav"
    face.parent.mkdir()
    face.write_bytes(b"x")
    audio.write_bytes(b"x")
    return face, audio


@pytest.fixture
def api_env(tmp_path, media):
    policy = ApiPolicy(results_dir=tmp_path / "res", uploads_dir=tmp_path / "up", allowed_dirs=(media[0].parent,),
                       models_dir=tmp_path / "models")
    return policy, UIRunner(results_dir=tmp_path / "res", models_dir=tmp_path / "models", cache_dir=tmp_path / "c")


def via_cli(media, tokens):
    args = build_parser().parse_args(["run", "--face", str(media[0]), "--audio", str(media[1]), *tokens])
    return config_from_args(args)


def via_ui(media, values):
    return config_from_ui({"face": str(media[0]), "audio": str(media[1]), **values}, need_sd_checkpoint=False)


def via_api(media, api_env, settings):
    policy, runner = api_env
    payload = {"face": str(media[0]), "audio": str(media[1]), "settings": settings}
    if str(settings.get("text") or "").strip():  # text to speech replaces the audio (both: refused)
        pytest.importorskip("espeakng_loader")
        del payload["audio"]
    return parse_request(payload, policy, runner, "job", need_sd_checkpoint=False)


def flat(opt, raw):
    """The UI/API form of ``raw`` (ints4 options travel as their four part keys)."""
    if opt.kind == "ints4":
        return dict(zip(opt.parts, raw))
    return {opt.key: raw}


def cli_tokens(opt, raw):
    if opt.kind == "bool":
        return [opt.flag if raw else "--no-" + opt.flag[2:]]
    if opt.kind in ("ints4", "box"):
        return [opt.flag, *map(str, raw)]
    if opt.kind == "choice_set":
        return [opt.flag, ",".join(raw)]
    return [opt.flag, str(raw)]


def samples(opt):
    """(raw value, expected field value) pairs an option must accept everywhere it is shown."""
    k = opt.kind
    if opt.key == "checkpoint":  # a released name stays a name everywhere (file names: the models folder)
        return [("wav2lip", "wav2lip")]
    if k == "bool":
        return [(not opt.default, not opt.default)]
    if k == "choice":
        return [(c, c) for c in opt.choices]
    if k == "choice_set":  # any of the choices, given in any order, kept in the declared order
        return [(list(opt.choices), opt.choices), ([opt.choices[-1], opt.choices[0]], opt.choices[::len(opt.choices) - 1]),
                ([], ())]
    if k in ("int", "float"):
        out = [(v, v) for v in (opt.minimum, opt.maximum) if v is not None]
        if opt.nullable:
            out.append((opt.null, None))
        return out
    if k == "ints4":
        return [([1, 2, 3, 4], (1, 2, 3, 4))]
    if k == "box":
        return [([10, 100, 20, 120], (10, 100, 20, 120))]
    if k in ("str", "text"):
        return [("some text", "some text")]
    return []  # paths, lists: covered by their own tests below


def refused(opt):
    k = opt.kind
    if k in ("choice", "choice_set"):
        return ["no-such-choice"]
    if k in ("int", "float"):
        out = ["not a number"]
        if opt.maximum is not None:
            out.append(opt.maximum + 1)
        if opt.minimum is not None:
            out.append((opt.null if opt.nullable else opt.minimum) - 1)
        return out
    if k == "bool":
        return ["false", 0, None]
    return []


def test_keys_are_unique_and_every_option_has_help_and_a_group():
    keys = [k for o in ALL for k in o.value_keys()]
    assert len(keys) == len(set(keys))
    for opt in ALL:
        assert opt.help and opt.group in options.GROUPS, opt.key


def test_defaults_agree_everywhere(media, api_env):
    """No option given: the CLI, the UI, the API and the dataclasses give one and the same config."""
    base = RunConfig(face=media[0], audio=media[1])
    cli, ui, api = via_cli(media, []), via_ui(media, {}), via_api(media, api_env, {})
    ui_full = via_ui(media, {k: v for k, v in DEFAULTS.items() if k not in ("face", "audio")})
    for opt in ALL:
        if opt.key in ("checkpoint", "models_dir", "results_dir", "allow_download"):
            continue  # the host's values (models folder, policy) or resolved names: below
        want = field(base, opt)
        assert field(cli, opt) == want, ("cli", opt.key)
        if opt.ui:
            assert field(ui, opt) == want and field(ui_full, opt) == want, ("ui", opt.key)
        if opt.client:
            assert field(api, opt) == want, ("api", opt.key)
    assert field(api, options.get("allow_download")) is False  # the server's policy, not the UI default
    props = schema()["properties"]["settings"]["properties"]
    for opt in ALL:
        if opt.ui and not opt.parts:
            assert DEFAULTS[opt.key] == opt.ui_default(), opt.key
        if opt.client and not opt.parts:
            assert props[opt.key]["default"] == opt.ui_default(), opt.key


@pytest.mark.parametrize("opt", ALL, ids=lambda o: o.key)
def test_every_interface_accepts_the_same_values(opt, media, api_env):
    for raw, want in samples(opt):
        if opt.flag is not None:
            assert field(via_cli(media, cli_tokens(opt, raw)), opt) == want, ("cli", raw)
        if opt.ui:
            assert field(via_ui(media, flat(opt, raw)), opt) == want, ("ui", raw)
        if opt.client:
            assert field(via_api(media, api_env, flat(opt, raw)), opt) == want, ("api", raw)


@pytest.mark.parametrize("opt", ALL, ids=lambda o: o.key)
def test_every_interface_refuses_the_same_values(opt, media, api_env, capsys):
    for raw in refused(opt):
        if opt.flag is not None and opt.kind != "bool":
            with pytest.raises((SystemExit, ValueError)):
                via_cli(media, [opt.flag, str(raw)])
        if opt.ui:
            with pytest.raises(UIInputError, match=opt.label.split()[0]):
                via_ui(media, {opt.key: raw})
        if opt.client:
            with pytest.raises(ApiError) as err:
                via_api(media, api_env, {opt.key: raw})
            assert err.value.status == 422 and opt.label.split()[0] in err.value.message


def test_booleans_from_json_are_validated_not_coerced(media, api_env):
    with pytest.raises(ApiError, match="not true or false") as err:
        via_api(media, api_env, {"colour_match": "false"})
    assert err.value.status == 422
    with pytest.raises(ApiError, match="wait"):
        parse_request({"face": str(media[0]), "audio": str(media[1]), "wait": "yes"}, *api_env, "job")


def test_host_settings_are_refused_from_a_client(media, api_env):
    for key in host_keys():
        with pytest.raises(ApiError) as err:
            via_api(media, api_env, {key: "x"})
        assert err.value.status == 403, key
    assert "allow_download" in host_keys() and "device" in host_keys()


def test_the_ui_widgets_show_the_declared_ranges_choices_and_defaults(tmp_path):
    gr = pytest.importorskip("gradio")
    from wav2lip_uhq.ui import build_ui

    demo = build_ui(UIRunner(results_dir=tmp_path / "r", models_dir=tmp_path / "m"))
    comps = demo.wav2lip_uhq_components
    for opt in ALL:
        if not opt.ui or opt.kind in ("ints4", "controlnets") or opt.key == "checkpoint":
            continue
        c = comps[opt.key]
        if opt.key == "voice":  # "" (the engine's default) is shown as that voice
            assert opt.ui_default() == "" and c.value == "en-us"
            continue
        assert c.value == opt.ui_default(), opt.key
        if isinstance(c, gr.Slider):
            assert (c.minimum, c.maximum) == (opt.minimum, opt.maximum), opt.key
        if isinstance(c, (gr.Radio, gr.Dropdown)):
            choices = [x[0] if isinstance(x, (list, tuple)) else x for x in c.choices]
            assert choices == list(opt.choices), opt.key
    for opt in ALL:
        if opt.kind == "ints4":
            assert [comps[k].value for k in opt.parts] == list(opt.default)


def test_the_api_schema_is_a_json_schema_that_matches_validation(media, api_env):
    jsonschema = pytest.importorskip("jsonschema")
    full = schema()
    jsonschema.Draft202012Validator.check_schema(full)
    settings = full["properties"]["settings"]
    validator = jsonschema.Draft202012Validator(settings)
    assert set(settings["properties"]) == set(client_keys())
    for opt in ALL:
        if not opt.client:
            continue
        for raw, _ in samples(opt):
            validator.validate(flat(opt, raw))
        for raw in refused(opt):
            assert not validator.is_valid({opt.key: raw}), (opt.key, raw)
    assert not validator.is_valid({"no_such_setting": 1})


def test_cli_lists_files_and_controlnets(media, tmp_path):
    c = via_cli(media, ["--controlnet", "cn.safetensors:tile:0.5:0.1:0.9", "--controlnet", "other",
                        "--lora", "style.safetensors:0.6", "--embedding", "emb.pt", "--restorer", "g.pth",
                        "--nosmooth", "--pingpong", "--no-download"])
    a, b = c.refine.controlnets
    assert (a.model, a.preprocessor, a.weight, a.guidance_start, a.guidance_end) == (
        "cn.safetensors", "tile", 0.5, 0.1, 0.9)
    assert (b.preprocessor, b.weight) == ("canny", 1.0)
    assert c.refine.loras == (("style.safetensors", 0.6),) and c.refine.embeddings == ("emb.pt",)
    assert c.composite.restorer == Path("g.pth") and c.faces.smoothing == "none"
    assert c.frames.loop == "pingpong" and c.allow_download is False
    with pytest.raises(ValueError, match="ControlNet"):
        via_cli(media, ["--controlnet", "cn:tile:0.5:0.9:0.1"])


def test_ui_and_api_set_the_refinement_working_size(media, api_env):
    """The drift the WebUI trials found: refine_size and friends reach the tab and the API."""
    values = {"refine_size": 256, "refine_every": 2, "refine_batch": 2, "temporal_blend": 0.3,
              "sync_tolerance": -1, "refine_margin": 0.2}
    for config in (via_ui(media, values), via_api(media, api_env, values)):
        r = config.refine
        assert (r.size, r.every, r.batch_size, r.temporal_blend, r.sync_tolerance, r.margin) == (
            256, 2, 2, 0.3, None, 0.2)
    with pytest.raises(UIInputError, match="multiple of 8"):
        via_ui(media, {"refine_size": 260})


def test_config_round_trips_through_flat_values(media):
    base = via_ui(media, {"pad_top": 4, "box": "1 50 2 60", "controlnet": "cn", "controlnet_weight": 0.5,
                          "face_index": 2, "mode": "enhanced"})
    again = via_ui(media, options.values_from_config(base))
    assert dataclasses.asdict(again) == dataclasses.asdict(base)


def test_dataclasses_check_their_own_fields():
    from wav2lip_uhq.config import CompositeOptions
    from wav2lip_uhq.refine.base import RefineOptions

    with pytest.raises(ValueError, match="mask feather"):
        CompositeOptions(mask_feather=3.0)
    with pytest.raises(ValueError, match="blend"):
        CompositeOptions(blend="smudge")
    with pytest.raises(ValueError, match="refine size"):
        RefineOptions(size=100)


def test_cli_help_shows_the_declared_defaults():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    text = sub.format_help()
    assert "(default: 0.12)" in text and "--silence-db" in text and "--landmark-smoothing" in text
