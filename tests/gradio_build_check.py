"""Build the wav2lip-uhq UI under whatever gradio this Python has, and print a JSON summary.

Not a test module: ``tests/test_ui_gradio_versions.py`` runs it with the Python of another
environment (gradio 3.41.2 as in A1111, 4.40.0 as in Forge; made by ``.ci/prepare``), which has
gradio but neither torch nor the package itself::

    PYTHONPATH=. .venv-gradio3/bin/python tests/gradio_build_check.py

It checks that importing ``wav2lip_uhq.ui`` does not import torch, that ``build_ui`` builds with
no gradio warning about unknown arguments (3.41 only warns where 4+ raises), that the frontend
config serialises and holds the key components, and that the mode dropdown is wired to the
option groups. The runner's pipeline is a stand-in that fails if anything touches it.

``--serve PORT --result VIDEO --calls FILE`` then launches the standalone app (``ui.launch``) on
127.0.0.1:PORT with a stand-in pipeline that copies VIDEO as each job's result and appends what
the job received (face, audio, mode, detector, extra outputs) to FILE as JSON lines, for the browser test. It
prints ``READY`` once the UI is built and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

# id (without the wav2lip_uhq_ prefix) -> the gradio component type the frontend gets
KEY_COMPONENTS = {
    "face": "file",
    "audio": "audio",
    "mode": "dropdown",
    "checkpoint": "dropdown",
    "detector": "radio",
    "run": "button",
    "interrupt": "button",
    "status": "textbox",
    "result": "video",
    "settings": "json",
    "recent": "dropdown",
    "mask_group": "accordion",
    "restore_group": "accordion",
    "refine_group": "accordion",
    # text to speech and the face picture
    "speech_group": "accordion",
    "text": "textbox",
    "tts_engine": "radio",
    "voice": "dropdown",
    "speak": "button",
    "face_image": "image",
    # several speakers and time ranges
    "speakers_group": "accordion",
    "speaker2_audio": "audio",
    "speaker2_face": "number",
    "ranges": "textbox",
    "delay": "number",
    "face_pick": "radio",
    # extra outputs: the checkboxes, and the files shown after a run
    "extras_group": "accordion",
    "extra_outputs": "checkboxgroup",
    "extra_files": "file",
}
PREFIX = "wav2lip_uhq_"


class Untouchable:
    """A pipeline that must not be used by a build (the real one imports torch)."""

    def __getattr__(self, name):
        raise AssertionError(f"the UI build touched the pipeline (.{name})")


class CopyPipeline:
    """Stand-in for ``LipSyncPipeline`` in ``--serve``: 'produces' a ready-made video."""

    def __init__(self, result: Path, calls: Path) -> None:
        self.result, self.calls = result, calls

    def run(self, config, progress=None, cancel=None):
        face, audio = Path(config.face), Path(config.audio)
        record = {
            "face": str(face),
            "face_size": face.stat().st_size if face.is_file() else None,
            "audio": str(audio),
            "audio_size": audio.stat().st_size if audio.is_file() else None,
            "mode": config.mode,
            "detector": config.faces.detector,
            "checkpoint": str(config.checkpoint),
            "text": config.speech.text,
            "face_index": config.faces.face_index,
            "speakers": [[sp.face_index, str(sp.audio), [str(r) for r in sp.ranges]] for sp in config.speakers],
            "ranges": [str(r) for r in config.ranges],
            "delay": config.delay,
            "extra_outputs": list(config.extra_outputs),
            "resume": getattr(config, "resume", False),
            "out": str(config.out) if config.out is not None else None,
        }
        with self.calls.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        frames = 10
        for i in range(frames + 1):
            if cancel is not None and cancel():
                from wav2lip_uhq.errors import Cancelled

                raise Cancelled("interrupted")
            if progress is not None:
                progress("lip-sync", i, frames)
            time.sleep(0.05)
        results = Path(config.results_dir)
        results.mkdir(parents=True, exist_ok=True)
        out = results / f"{face.stem}_{audio.stem}.mp4"
        shutil.copyfile(self.result, out)
        from wav2lip_uhq.outputs import EXTRA_OUTPUTS, extra_paths

        extras = extra_paths(config, out)
        for kind, path in extras.items():  # the same ready-made video under each extra output's name
            if EXTRA_OUTPUTS[kind][0] == "/":
                path.mkdir()  # a PNG sequence's folder
            else:
                shutil.copyfile(self.result, path)
        return types.SimpleNamespace(output=out, frames=frames, fps=25.0, frames_without_face=0, extra_outputs=extras)


    def preview(self, config, frame_index=0):
        """The face picture itself as the 'result' (what a click on the preview is mapped on)."""
        import cv2

        frame = cv2.imread(str(config.face))
        return frame, frame

    def face_boxes(self, config, frame_index=0):
        """Two 'faces': the picture's left and right halves (x1, y1, x2, y2), left to right."""
        import cv2

        h, w = cv2.imread(str(config.face)).shape[:2]
        return [(0, 0, w // 2, h), (w // 2, 0, w, h)]


def _components(config: dict) -> dict[str, dict]:
    """elem_id (without the prefix) -> {"id", "type", "props"} from the frontend config."""
    found = {}
    for comp in config["components"]:
        elem_id = (comp.get("props") or {}).get("elem_id") or ""
        if elem_id.startswith(PREFIX):
            found[elem_id[len(PREFIX) :]] = comp
    return found


def _triggers(dep: dict) -> list[tuple[int, str]]:
    """A dependency's (component id, event) pairs: 3.41 has "targets": [id] + "trigger",
    4.x and later "targets": [[id, event], ...]."""
    pairs = []
    for target in dep.get("targets") or []:
        if isinstance(target, (list, tuple)):
            pairs.append((target[0], target[1]))
        else:
            pairs.append((target, dep.get("trigger")))
    return pairs


def build_check(root: Path, check_torch: bool = True) -> tuple[dict, object, object]:
    """Build the UI with a models folder under ``root``; (summary, demo, runner).

    ``check_torch=False`` where torch is already loaded (in-process under pytest)."""
    from wav2lip_uhq import ui
    from wav2lip_uhq.ui_runner import UIRunner

    if check_torch:
        assert "torch" not in sys.modules, "importing wav2lip_uhq.ui imported torch"
    import gradio as gr

    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "my_w2l.pth").write_bytes(b"not a real checkpoint")  # an extra file for the dropdown
    runner = UIRunner(results_dir=root / "results", models_dir=models, cache_dir=root / "cache", pipeline=Untouchable())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        demo = ui.build_ui(runner)
    messages = sorted({" ".join(str(w.message).split()) for w in caught})
    # 3.41: "You have unused kwarg parameters in Video, please remove them: {...}"
    bad = [m for m in messages if "kwarg" in m or "unexpected keyword" in m or "is deprecated" in m and "gr." in m]
    assert not bad, f"gradio warned about arguments it does not know: {bad}"
    assert isinstance(demo, gr.Blocks)
    if check_torch:
        assert "torch" not in sys.modules, "building the UI imported torch"

    config = demo.get_config_file() if hasattr(demo, "get_config_file") else demo.config
    json.dumps(config, default=str)  # the frontend gets this as JSON
    comps = _components(config)
    types_found = {name: comps[name]["type"] if name in comps else None for name in KEY_COMPONENTS}
    wrong = {k: v for k, v in types_found.items() if v != KEY_COMPONENTS[k]}
    assert not wrong, f"missing or unexpected components: {wrong} (want {KEY_COMPONENTS})"
    for key in ui.UI_KEYS:  # every value the run handler reads has a component
        assert key in comps, f"no component {PREFIX}{key}"
    assert comps["mode"]["props"].get("value") == ui.DEFAULTS["mode"]
    visible = {g: comps[g]["props"].get("visible", True) for g in ("mask_group", "restore_group", "refine_group")}
    assert visible == {"mask_group": True, "restore_group": False, "refine_group": False}, visible
    ckpt_choices = [c[0] if isinstance(c, (list, tuple)) else c for c in comps["checkpoint"]["props"]["choices"]]
    assert "wav2lip_gan" in ckpt_choices and "my_w2l.pth" in ckpt_choices, ckpt_choices

    # the mode dropdown's change event updates the three option groups, in that order
    mode_id = comps["mode"]["id"]
    groups = [comps[g]["id"] for g in ("mask_group", "restore_group", "refine_group")]
    deps = [d for d in config["dependencies"] if (mode_id, "change") in _triggers(d)]
    assert len(deps) == 1, f"the mode dropdown has {len(deps)} change events"
    assert list(deps[0]["outputs"]) == groups, (deps[0]["outputs"], groups)
    run_id = comps["run"]["id"]
    run_deps = [d for d in config["dependencies"] if (run_id, "click") in _triggers(d)]
    assert len(run_deps) == 1, f"the Run button has {len(run_deps)} click events"
    outputs = list(run_deps[0]["outputs"])
    assert comps["result"]["id"] in outputs and comps["status"]["id"] in outputs, outputs
    # Resume (hidden: no interrupted job here) fills what Run fills, then shows or hides itself again
    assert comps["resume"]["props"].get("visible") is False and comps["resume_info"]["props"].get("visible") is False
    resume_deps = [d for d in config["dependencies"] if (comps["resume"]["id"], "click") in _triggers(d)]
    assert [list(d["outputs"]) for d in resume_deps] == [outputs], resume_deps
    # Speak fills the audio player; a face picture becomes the face input
    for source, event, target in (("speak", "click", "audio"), ("face_image", "change", "face")):
        wired = [d for d in config["dependencies"] if (comps[source]["id"], event) in _triggers(d)]
        assert [list(d["outputs"]) for d in wired] == [[comps[target]["id"]]], (source, wired)

    # a click on the preview sets a face index: speaker 1's or one of the extra speakers'
    preview = [d for d in config["dependencies"] if (comps["preview_image"]["id"], "select") in _triggers(d)]
    faces = [comps[k]["id"] for k in ("face_index", "speaker2_face", "speaker3_face", "speaker4_face",
                                      "speaker5_face", "status")]
    assert [list(d["outputs"]) for d in preview] == [faces], preview

    updates = {}
    for mode in ("fast", "uhq", "enhanced"):
        result = ui.mode_change(mode)
        updates[mode] = [dict(u).get("visible") for u in result]
        want = ui.visibility_for_mode(mode)
        assert updates[mode] == [want["mask"], want["restore"], want["refine"]], (mode, updates[mode])

    summary = {
        "ok": True,
        "gradio": gr.__version__,
        "python": sys.version.split()[0],
        "torch_imported": "torch" in sys.modules,
        "cv2_imported": "cv2" in sys.modules,
        "components": len(config["components"]),
        "dependencies": len(config["dependencies"]),
        "key_components": types_found,
        "mode_change": updates,
        "checkpoint_choices": ckpt_choices,
        "build_warnings": messages,
    }
    return summary, demo, runner


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--serve", type=int, metavar="PORT", help="then launch the app on this port")
    p.add_argument("--result", type=Path, help="--serve: the video every job returns")
    p.add_argument("--calls", type=Path, help="--serve: append each job's inputs here (JSON lines)")
    p.add_argument("--results-dir", type=Path, help="--serve: the results folder")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="w2l_gradio_check_") as tmp:
        summary, _, _ = build_check(Path(tmp))
    print(json.dumps(summary, indent=2, sort_keys=True), flush=True)
    if args.serve is None:
        return 0

    if not (args.result and args.calls and args.results_dir):
        p.error("--serve needs --result, --calls and --results-dir")
    from wav2lip_uhq import ui
    from wav2lip_uhq.ui_runner import UIRunner

    runner = UIRunner(results_dir=args.results_dir, pipeline=CopyPipeline(args.result, args.calls))
    print("READY", flush=True)
    ui.launch(port=args.serve, runner=runner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
