"""preload.py: the WebUI calls preload(parser) with its global argparse parser before parsing."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

PRELOAD = Path(__file__).resolve().parents[1] / "preload.py"


def load_preload():
    spec = importlib.util.spec_from_file_location("wav2lip_uhq_preload_under_test", PRELOAD)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def webui_parser() -> argparse.ArgumentParser:
    """A few of the WebUI's own flags (modules/cmd_args.py)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=str, default=".")
    parser.add_argument("--models-dir", type=str, default=None)
    parser.add_argument("--skip-install", action="store_true")
    parser.add_argument("--device-id", type=str, default=None)
    parser.add_argument("--xformers", action="store_true")
    return parser


@pytest.fixture
def parser():
    p = webui_parser()
    load_preload().preload(p)
    return p


def test_defaults(parser):
    opts = parser.parse_args([])
    assert opts.wav2lip_uhq_models_dir is None
    assert opts.wav2lip_uhq_cache_dir is None
    assert opts.wav2lip_uhq_device == "auto"


def test_flags_become_cmd_opts_attributes(parser):
    opts = parser.parse_args(
        [
            "--wav2lip-uhq-models-dir",
            "/models/w2l",
            "--wav2lip-uhq-cache-dir",
            "/cache/w2l",
            "--wav2lip-uhq-device",
            "cpu",
        ]
    )
    assert opts.wav2lip_uhq_models_dir == "/models/w2l"
    assert opts.wav2lip_uhq_cache_dir == "/cache/w2l"
    assert opts.wav2lip_uhq_device == "cpu"


@pytest.mark.parametrize("device", ["auto", "cuda", "cpu", "mps"])
def test_device_choices(parser, device):
    assert parser.parse_args(["--wav2lip-uhq-device", device]).wav2lip_uhq_device == device


def test_bad_device_is_rejected(parser, capsys):
    with pytest.raises(SystemExit):
        parser.parse_args(["--wav2lip-uhq-device", "tpu"])
    assert "invalid choice" in capsys.readouterr().err


def test_webui_flags_still_work(parser):
    opts = parser.parse_args(
        ["--data-dir", "/d", "--models-dir", "/m", "--skip-install", "--xformers", "--device-id", "1"]
    )
    assert (opts.data_dir, opts.models_dir, opts.skip_install, opts.xformers, opts.device_id) == (
        "/d",
        "/m",
        True,
        True,
        "1",
    )
    assert opts.wav2lip_uhq_device == "auto"
    # the WebUI's --models-dir is not shadowed by ours
    assert parser.parse_args(["--models-dir", "/m"]).wav2lip_uhq_models_dir is None


def test_only_prefixed_flags_are_added():
    before = webui_parser()
    after = webui_parser()
    load_preload().preload(after)
    added = set(after._option_string_actions) - set(before._option_string_actions)
    assert added == {"--wav2lip-uhq-models-dir", "--wav2lip-uhq-cache-dir", "--wav2lip-uhq-device"}
    assert "wav2lip-uhq" in after.format_help()


def test_second_copy_of_the_extension_does_not_break_startup(parser):
    load_preload().preload(parser)  # e.g. the extension cloned twice under two folder names
    assert parser.parse_args(["--wav2lip-uhq-device", "mps"]).wav2lip_uhq_device == "mps"


def test_parse_known_args_ignores_unknown_flags(parser):
    # the WebUI uses parse_known_args() when IGNORE_CMD_ARGS_ERRORS is set
    opts, rest = parser.parse_known_args(["--some-other-extension-flag", "--wav2lip-uhq-cache-dir", "c"])
    assert opts.wav2lip_uhq_cache_dir == "c" and rest == ["--some-other-extension-flag"]
