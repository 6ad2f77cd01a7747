"""javascript/wav2lip_uhq.js, run in node's vm with a fake window/document and the WebUI's helpers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parents[1] / "javascript" / "wav2lip_uhq.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

# Loads the script into fresh contexts and reports what happened as JSON.
HARNESS = r"""
const vm = require("vm");
const fs = require("fs");
const src = fs.readFileSync(process.argv[2], "utf8");

function fakeElement(id, tag) {
    return {
        id, tagName: tag || "DIV", title: "", disabled: false, clicks: 0, attrs: {}, rects: 1,
        click() { this.clicks += 1; },
        setAttribute(k, v) { this.attrs[k] = String(v); },
        getClientRects() { return new Array(this.rects); },
    };
}

function fakeEvent(props) {
    return Object.assign({
        key: "Enter", keyCode: 13, ctrlKey: false, metaKey: false, altKey: false, shiftKey: false,
        repeat: false, prevented: false, stopped: false,
        preventDefault() { this.prevented = true; },
        stopPropagation() { this.stopped = true; },
    }, props);
}

// ids: which of our elements exist; webui: whether the WebUI's helpers are defined.
function load(opts) {
    const elements = {};
    for (const name of opts.ids) {
        const id = "wav2lip_uhq_" + name;
        elements[id] = fakeElement(id, name === "run" || name === "interrupt" ? "BUTTON" : "DIV");
    }
    const run = elements["wav2lip_uhq_run"] || null;
    const ourTab = { id: "tab_wav2lip_uhq", contains: (el) => el !== null && Object.values(elements).includes(el) };
    const otherTab = { id: "tab_txt2img", contains: () => false };
    const state = { tab: ourTab, listeners: [], loaded: [], updated: [], errors: [] };
    const document = {
        readyState: "complete",
        documentElement: {},
        getElementById: (id) => elements[id] || null,
        querySelector: (sel) => elements[sel.replace(/^#/, "")] || null,
    };
    const sandbox = {
        console, setTimeout, clearTimeout, document,
        navigator: { platform: opts.platform || "Linux x86_64" },
        addEventListener: (type, cb, capture) => state.listeners.push({ type, cb, capture: !!capture }),
    };
    if (opts.webui) {
        sandbox.gradioApp = () => document;
        sandbox.onUiLoaded = (cb) => state.loaded.push(cb);
        sandbox.onAfterUiUpdate = (cb) => state.updated.push(cb);
        sandbox.onUiUpdate = (cb) => state.updated.push(cb);
        sandbox.get_uiCurrentTabContent = () => state.tab;
    }
    sandbox.window = sandbox;
    vm.createContext(sandbox);
    const before = new Set(Object.getOwnPropertyNames(sandbox));
    const loadScript = () => vm.runInContext(src, sandbox, { filename: "wav2lip_uhq.js" });
    loadScript();
    const globals = Object.getOwnPropertyNames(sandbox).filter((n) => !before.has(n));
    const press = (props) => {
        const e = fakeEvent(props);
        for (const l of state.listeners) if (l.type === "keydown") l.cb(e);
        return { prevented: e.prevented, stopped: e.stopped, clicks: run ? run.clicks : null };
    };
    return { sandbox, state, elements, run, ourTab, otherTab, globals, press, loadScript };
}

const ALL = ["run", "interrupt", "mode", "detector", "smoothing", "pad_top", "pad_bottom", "pad_left",
             "pad_right", "mask_region", "mask_feather", "mask_dilate", "blend", "denoise", "seed", "crf"];
const out = {};

// the WebUI
{
    const w = load({ ids: ALL, webui: true });
    out.webui_globals = w.globals;
    out.webui_listeners = w.state.listeners.map((l) => ({ type: l.type, capture: l.capture }));
    out.webui_callbacks = { loaded: w.state.loaded.length, updated: w.state.updated.length };
    w.state.loaded.forEach((cb) => cb());
    w.state.updated.forEach((cb) => cb([]));
    out.titles = Object.fromEntries(Object.entries(w.elements).map(([id, el]) => [id, el.title]));
    out.run_attrs = w.run.attrs;
    out.ctrl_enter = w.press({ ctrlKey: true });
    out.cmd_enter = w.press({ metaKey: true });
    out.plain_enter = w.press({});
    out.ctrl_shift_enter = w.press({ ctrlKey: true, shiftKey: true });
    out.ctrl_a = w.press({ ctrlKey: true, key: "a", keyCode: 65 });
    out.repeat = w.press({ ctrlKey: true, repeat: true });
    w.run.disabled = true;
    out.disabled = w.press({ ctrlKey: true });
    w.run.disabled = false;
    w.state.tab = w.otherTab;
    out.other_tab = w.press({ ctrlKey: true });
    w.state.tab = null;  // no tab content: fall back to layout visibility
    out.no_tab = w.press({ ctrlKey: true });
    w.elements["wav2lip_uhq_mode"].title = "";
    w.loadScript();  // loaded a second time (two copies of the extension)
    out.second_load_listeners = w.state.listeners.length;
    out.api = Object.keys(w.sandbox.wav2lipUhq).sort();
}

// the WebUI with none of our elements (another tab's page state, or an older UI)
{
    const w = load({ ids: [], webui: true });
    w.state.loaded.forEach((cb) => cb());
    w.state.updated.forEach((cb) => cb([]));
    out.empty = w.press({ ctrlKey: true });
}

// the standalone app: no WebUI helpers, no MutationObserver in this fake
{
    const w = load({ ids: ALL, webui: false, platform: "MacIntel" });
    out.app_globals = w.globals;
    out.app_mode_title = w.elements["wav2lip_uhq_mode"].title;
    out.app_run_title = w.run.title;
    out.app_key_hint = w.sandbox.wav2lipUhq.keyHint;
    out.app_cmd_enter = w.press({ metaKey: true });
    w.run.rects = 0;  // hidden
    out.app_hidden = w.press({ metaKey: true });
}

process.stdout.write(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    harness = tmp_path_factory.mktemp("js") / "harness.js"
    harness.write_text(HARNESS, encoding="utf-8")
    proc = subprocess.run(
        [NODE, str(harness), str(JS)], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_syntax():
    proc = subprocess.run([NODE, "--check", str(JS)], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_only_prefixed_globals(result):
    for key in ("webui_globals", "app_globals"):
        assert result[key], key  # the namespace object exists
        # switch_to_wav2lip_uhq: the name the WebUI's "Send to" buttons call (switch_to_<tab name>)
        assert all(name.startswith("wav2lipUhq") or name == "switch_to_wav2lip_uhq" for name in result[key]), \
            result[key]
    assert result["api"] == ["applyTooltips", "keyHint", "onKeyDown", "tips"]


def test_hooks_into_the_webui(result):
    assert result["webui_listeners"] == [{"type": "keydown", "capture": True}]
    assert result["webui_callbacks"] == {"loaded": 1, "updated": 1}
    assert result["second_load_listeners"] == 1


def test_ctrl_enter_clicks_run_when_our_tab_is_shown(result):
    assert result["ctrl_enter"] == {"prevented": True, "stopped": True, "clicks": 1}
    assert result["cmd_enter"] == {"prevented": True, "stopped": True, "clicks": 2}
    assert result["repeat"] == {"prevented": True, "stopped": True, "clicks": 2}  # held key: one run
    for case in ("plain_enter", "ctrl_shift_enter", "ctrl_a", "disabled", "other_tab"):
        assert result[case] == {"prevented": False, "stopped": False, "clicks": 2}, case
    assert result["no_tab"]["clicks"] == 3


def test_tooltips_and_keyboard_hint(result):
    titles = result["titles"]
    for name in (
        "mode",
        "detector",
        "smoothing",
        "pad_top",
        "pad_bottom",
        "mask_region",
        "mask_feather",
        "mask_dilate",
        "blend",
        "denoise",
        "seed",
        "crf",
        "interrupt",
    ):
        assert len(titles["wav2lip_uhq_" + name]) > 15, name
    assert "Ctrl+Enter" in titles["wav2lip_uhq_run"]
    assert result["run_attrs"] == {"aria-keyshortcuts": "Control+Enter"}


def test_missing_elements_are_harmless(result):
    assert result["empty"] == {"prevented": False, "stopped": False, "clicks": None}


def test_standalone_app(result):
    assert result["app_mode_title"]
    assert result["app_key_hint"] == "\u2318+Enter"
    assert "\u2318+Enter" in result["app_run_title"]
    assert result["app_cmd_enter"]["clicks"] == 1
    assert result["app_hidden"] == {"prevented": False, "stopped": False, "clicks": 1}


def test_tooltip_ids_exist_in_the_ui():
    """Every tooltip targets a real elem_id of the UI (the form makes one per declared option)."""
    from wav2lip_uhq.ui import element_ids

    ids = element_ids()
    text = JS.read_text(encoding="utf-8")
    block = text[text.index("var TIPS = {") : text.index("};", text.index("var TIPS = {"))]
    keys = set(re.findall(r"^\s{8}([a-z_]+):", block, flags=re.MULTILINE))
    assert keys and keys <= ids, sorted(keys - ids)
    assert "run" in ids and "interrupt" in ids
