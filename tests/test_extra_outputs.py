"""The extra outputs of one run (``--extra-outputs``): all from the one pass, beside the result,
reserved and committed with it; the mask layer reproduces the result over the original."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from model_helpers import small_gfpgan_file, small_upscaler_file

from wav2lip_uhq.config import CompositeOptions, FaceOptions, RunConfig
from wav2lip_uhq.errors import Cancelled, OutputError
from wav2lip_uhq.outputs import EXTRA_KINDS, check_output, extra_paths, is_extra_output, reserve_output
from wav2lip_uhq.pipeline import LipSyncPipeline
from wav2lip_uhq.video import EncodeSettings, iter_frames

REPO = Path(__file__).resolve().parents[1]
BOX = ("--box", "80", "200", "170", "280")  # the astronaut's face, top bottom left right


def frames(path: Path) -> np.ndarray:
    return np.stack(list(iter_frames(path))).astype(np.int16)


def decode_layer(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A ProRes 4444 file's colour (BGR) and alpha in [0, 1] (read from its alpha plane)."""
    import av

    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    assert decoded[0].format.name.startswith("yuva444p"), decoded[0].format.name
    bits = int(decoded[0].format.name.removeprefix("yuva444p").removesuffix("le") or 8)
    colour = np.stack([f.to_ndarray(format="bgr24") for f in decoded]).astype(np.int16)
    alpha = np.stack([np.frombuffer(f.planes[3], np.uint16).reshape(f.height, -1)[:, : f.width] for f in decoded])
    return colour, alpha / float(2**bits - 1)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".reserved")]


@pytest.fixture(scope="module")
def restorers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("restorers")
    return small_gfpgan_file(folder), small_upscaler_file(folder)


def test_every_extra_output_from_the_one_pass(astronaut_png, speech_short, w2l_checkpoint, restorers, tmp_path,
                                              monkeypatch):
    """enhanced with super-resolution: raw is pasted from the 96 px face, composited is the frame
    before restoration, and the mask's alpha is the compositing mask the run used."""
    from wav2lip_uhq.generators.wav2lip import Wav2LipGenerator
    from wav2lip_uhq.pipeline import source, stages

    decodes, generated, masks = [], [], {}
    real_iter, real_generate, real_composite = source.iter_frames, Wav2LipGenerator.generate, stages.Composite.process
    monkeypatch.setattr(source, "iter_frames", lambda *a, **k: decodes.append(a) or real_iter(*a, **k))
    monkeypatch.setattr(Wav2LipGenerator, "generate",
                        lambda self, p, f: generated.append(len(p)) or real_generate(self, p, f))

    def composite(self, items, progress):
        real_composite(self, items, progress)
        for it in items:
            masks[it.index] = (it.roi, None if it.alpha is None else it.alpha.copy())

    monkeypatch.setattr(stages.Composite, "process", composite)
    gfpgan, upscaler = restorers
    out = tmp_path / "talk.mkv"
    config = RunConfig(face=astronaut_png, audio=speech_short, checkpoint=w2l_checkpoint, out=out, mode="enhanced",
                       faces=FaceOptions(detector="dlib"), encode=EncodeSettings(lossless=True),
                       composite=CompositeOptions(restorer=gfpgan, upscaler=upscaler), cache_dir=tmp_path / "c",
                       batch_size=8, extra_outputs=EXTRA_KINDS)
    result = LipSyncPipeline("cpu").run(config)

    names = {k: p.name for k, p in result.extra_outputs.items()}
    assert names == {"raw": "talk.raw.mkv", "composited": "talk.composited.mkv", "debug": "talk.debug.mkv",
                     "mask": "talk.mask.mov", "mask_png": "talk.mask_png"}
    assert len(decodes) == 1 and sum(generated) == result.frames  # one decode, one generator call per frame
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c", "talk.mkv", *names.values()])

    res, src = frames(out), frames(astronaut_png)[0]
    n, h, w = res.shape[:3]
    alpha = np.zeros((n, h, w), np.float32)
    for i, (roi, a) in masks.items():
        x1, y1, x2, y2 = roi
        alpha[i, y1:y2, x1:x2] = 1.0 if a is None else a
    assert len(masks) == n and (alpha > 0).any()
    mouth, outside = alpha > 0.5, alpha == 0

    raw = frames(result.extra_outputs["raw"])
    assert raw.shape == res.shape
    box = np.zeros((h, w), bool)
    for i in range(n):  # the generator's boxes: a hard paste changes the whole box
        ys, xs = np.nonzero(np.any(raw[i] != src, axis=2))
        box[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
    np.testing.assert_array_equal(raw[:, ~box], res[:, ~box])  # outside the box: the result (= the source)
    assert (np.any(raw != res, axis=3)[mouth]).mean() > 0.9  # inside the mouth: what the generator made

    comp = frames(result.extra_outputs["composited"])
    assert comp.shape == res.shape
    np.testing.assert_array_equal(comp[outside], res[outside])  # restoration stays inside the mask...
    assert (np.any(comp != res, axis=3)[mouth]).mean() > 0.5  # ...where the composited frame is before it

    debug = frames(result.extra_outputs["debug"])
    assert debug.shape == (n, h, 2 * w, 3)
    np.testing.assert_array_equal(debug[:, :, :w], res)
    assert ((debug[:, :, w:, 2] - src[..., 2]) > 40).sum() > 500  # the red mask tint

    colour, a = decode_layer(result.extra_outputs["mask"])
    assert colour.shape == res.shape
    assert np.abs(a - alpha).max() <= 1 / 1023 and (a[outside] == 0).all()  # alpha = the compositing mask
    # the layer over the original (a normal blend) is the result; not quite where restoration pushed the
    # layer's colour past 0..255 (clipped), and ProRes is a little lossy
    err = np.abs(src + a[..., None] * (colour - src) - res)[mouth]
    assert (err <= 3).mean() > 0.999 and err.mean() < 0.5, ((err <= 3).mean(), err.mean())

    pngs = sorted(result.extra_outputs["mask_png"].iterdir())
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(n)]
    layer = np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in pngs]).astype(np.float32)
    assert layer.shape == (n, h, w, 4)
    np.testing.assert_array_equal(layer[..., 3], np.rint(alpha * 255))
    err = np.abs(src + layer[..., 3:] / 255 * (layer[..., :3] - src) - res)[mouth]
    assert (err <= 1).mean() > 0.999 and err.mean() < 0.1, ((err <= 1).mean(), err.mean())


def fast_config(face, audio, ckpt, out: Path, **kw) -> RunConfig:
    return RunConfig(face=face, audio=audio, checkpoint=ckpt, out=out, mode="fast",
                     faces=FaceOptions(box=(80, 200, 170, 280)), cache_dir=out.parent / "c", batch_size=4, **kw)


@pytest.mark.parametrize("how", ["cancel", "error"])
def test_a_cancelled_or_failed_run_leaves_none_of_them(astronaut_png, speech_short, w2l_checkpoint, tmp_path,
                                                       monkeypatch, how):
    from wav2lip_uhq.pipeline import extras

    written = []
    real = extras.PngSequence.write

    def write(self, layer):
        written.append(1)
        if how == "error" and len(written) > 5:
            raise OSError(28, "No space left on device", str(self.tmp))
        real(self, layer)

    monkeypatch.setattr(extras.PngSequence, "write", write)
    folder = tmp_path / "out"
    folder.mkdir()
    config = fast_config(astronaut_png, speech_short, w2l_checkpoint, folder / "talk.mp4", extra_outputs=EXTRA_KINDS)
    with pytest.raises(Cancelled if how == "cancel" else OSError):
        LipSyncPipeline("cpu").run(config, cancel=lambda: len(written) > 5)
    assert len(written) > 5  # it stopped part way, with every writer open
    assert [p.name for p in folder.iterdir() if p.name != "c"] == []  # not even a partial file


def test_an_existing_extra_output_is_refused_before_any_work(astronaut_png, speech_short, tmp_path):
    raw = tmp_path / "keep.raw.mp4"
    raw.write_bytes(b"precious")
    code = ("import sys; sys.modules['torch'] = None\n"  # importing torch now fails: refused before it loads
            "from wav2lip_uhq.cli import main\n"
            f"sys.exit(main(['run', '--face', {str(astronaut_png)!r}, '--audio', {str(speech_short)!r}, "
            f"'--out', {str(tmp_path / 'keep.mp4')!r}, '--extra-outputs', 'mask,raw']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert str(raw) in r.stderr and "--overwrite" in r.stderr
    assert raw.read_bytes() == b"precious" and not (tmp_path / "keep.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.raw.mp4"]


def test_names_and_reservations(astronaut_png, speech_short, tmp_path):
    c = RunConfig(face=astronaut_png, audio=speech_short, results_dir=tmp_path, extra_outputs=["mask", "debug"])
    (tmp_path / "astronaut_speech_short.debug.mp4").write_bytes(b"an earlier run's")
    with reserve_output(c) as out:  # a default name is one where none of its files exists
        assert out.name == "astronaut_speech_short_1.mp4"
        assert {k: p.name for k, p in extra_paths(c, out).items()} == {
            "debug": "astronaut_speech_short_1.debug.mp4", "mask": "astronaut_speech_short_1.mask.mov"}
        assert (tmp_path / ".astronaut_speech_short_1.mask.mov.reserved").is_file()
        with pytest.raises(OutputError, match="another run"):  # an explicit name being written: refused
            with reserve_output(RunConfig(face=astronaut_png, audio=speech_short, out=tmp_path / "other.mp4",
                                          composite=CompositeOptions(debug_video=out.with_suffix(".debug.mp4")))):
                pass
    assert leftovers(tmp_path) == []
    from test_outputs import dead_pid

    from wav2lip_uhq.outputs import clean_stale_partials, marker_for

    killed = tmp_path / ".gone.mask_png.0123abcd.partial"  # a killed run's PNG sequence, half written
    killed.mkdir()
    (killed / "000000.png").write_bytes(b"png")
    marker_for(tmp_path / "gone.mask_png").write_text(str(dead_pid()))
    live = tmp_path / ".live.mask_png.89abcdef.partial"
    live.mkdir()
    marker_for(tmp_path / "live.mask_png").write_text(str(os.getpid()))
    assert clean_stale_partials(tmp_path) == 1 and not killed.exists() and live.is_dir()
    lossless = RunConfig(face=astronaut_png, audio=speech_short, out=tmp_path / "x.mkv", extra_outputs=("raw",),
                         encode=EncodeSettings(lossless=True))
    assert extra_paths(lossless, check_output(lossless))["raw"].name == "x.raw.mkv"
    assert is_extra_output(Path("a.raw.mp4")) and is_extra_output(Path("a.mask_png"))
    assert not is_extra_output(Path("raw.mp4"))


def test_overwrite_replaces_every_file_together(astronaut_png, speech_short, w2l_checkpoint, tmp_path):
    out = tmp_path / "talk.mp4"
    config = fast_config(astronaut_png, speech_short, w2l_checkpoint, out, extra_outputs=("raw", "mask_png"))
    pipe = LipSyncPipeline("cpu")
    pipe.run(config)
    with pytest.raises(OutputError, match="already exists"):
        pipe.run(config)
    (tmp_path / "talk.mask_png" / "stale.txt").write_text("from before")
    config.overwrite = True
    result = pipe.run(config)
    pngs = sorted(p.name for p in result.extra_outputs["mask_png"].iterdir())
    assert pngs == [f"{i:06d}.png" for i in range(result.frames)]  # the old folder is gone, stale file and all
    assert leftovers(tmp_path) == []


def test_cli_lists_them_and_refuses_a_split(astronaut_png, speech_short, w2l_checkpoint, tmp_path, capsys):
    from wav2lip_uhq.cli import main

    base = ["run", "--face", str(astronaut_png), "--audio", str(speech_short), "--checkpoint", str(w2l_checkpoint),
            "--mode", "fast", *BOX, "--cache-dir", str(tmp_path / "c"), "-q"]
    with pytest.raises(SystemExit) as exit_:
        main([*base, "--out", str(tmp_path / "a.mp4"), "--extra-outputs", "raw,nope"])
    assert exit_.value.code == 2 and "'nope' not one of raw, composited" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "a.mp4"), "--extra-outputs", "raw", "--workers", "2"]) == 2
    assert "--extra-outputs is not split across workers" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "a.mp4"), "--extra-outputs", "raw,debug"]) == 0
    printed = capsys.readouterr().out
    assert f"also wrote raw: {tmp_path / 'a.raw.mp4'}" in printed and "also wrote debug:" in printed
    assert (tmp_path / "a.raw.mp4").is_file() and (tmp_path / "a.debug.mp4").is_file()


def test_the_ui_offers_them_and_keeps_them_out_of_the_recent_results(astronaut_png, speech_short, w2l_checkpoint,
                                                                     tmp_path):
    pytest.importorskip("gradio")
    from test_ui import _block_fns

    from wav2lip_uhq.ui import DEFAULTS, UI_KEYS, UIRunner, build_ui

    runner = UIRunner(results_dir=tmp_path / "res", cache_dir=tmp_path / "cache", device="cpu")
    demo = build_ui(runner)
    assert demo.wav2lip_uhq_components["extra_outputs"].value == []
    [run] = [f.fn for f in _block_fns(demo) if getattr(f.fn, "__name__", "") == "run"]
    values = {**DEFAULTS, "face": str(astronaut_png), "audio": str(speech_short), "mode": "fast",
              "checkpoint": str(w2l_checkpoint), "box": "80 200 170 280", "batch_size": 4,
              "extra_outputs": ["mask_png", "raw"]}
    status, video, summary, settings, recent, gallery, files = list(run(*[values[k] for k in UI_KEYS]))[-1]
    stem = Path(video).stem
    assert status.startswith("done:") and settings["extra_outputs"] == ["raw", "mask_png"]
    assert files["value"] == [str(tmp_path / "res" / f"{stem}.raw.mp4")]  # the files; the PNG folder is named
    assert files["visible"] is True  # hidden until a run has some
    assert f"also: raw: {stem}.raw.mp4" in summary and f"also: mask_png: {stem}.mask_png/" in summary
    assert recent["choices"] == [video] and [c for _, c in gallery["value"]] == [Path(video).name]


def test_the_api_lists_them_and_serves_each_by_name(tmp_path, w2l_checkpoint, astronaut_png, speech_short):
    pytest.importorskip("fastapi")
    from api_helpers import api_client

    from wav2lip_uhq.api import API_PREFIX

    api = api_client(tmp_path, w2l_checkpoint, astronaut_png, speech_short)
    settings = {"mode": "fast", "box": "80 200 170 280", "checkpoint": "test_w2l.pth", "batch_size": 4,
                "extra_outputs": ["raw", "mask", "mask_png"]}
    r = api.post(API_PREFIX + "/run", json={"face": "face.png", "audio": "speech.wav", "settings": settings,
                                           "output_name": "hello", "wait": True})
    job = r.json()
    assert r.status_code == 200 and job["state"] == "done", job
    extras = job["extra_outputs"]
    assert {k: v["name"] for k, v in extras.items()} == {"raw": "hello.raw.mp4", "mask": "hello.mask.mov",
                                                          "mask_png": "hello.mask_png"}
    assert extras["mask_png"]["frames"] == [f"{i:06d}.png" for i in range(job["frames"])]
    files = f"{API_PREFIX}/jobs/{job['id']}/files/"
    raw = api.get(files + "hello.raw.mp4")
    assert raw.status_code == 200 and raw.headers["content-type"] == "video/mp4"
    assert raw.content == (api.policy.results_dir / "hello.raw.mp4").read_bytes()
    mov = api.get(files + "hello.mask.mov")
    assert mov.status_code == 200 and mov.headers["content-type"] == "video/quicktime"
    png = api.get(files + "hello.mask_png/000003.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("hello.mp4", "hello.mask_png", "hello.mask_png/../hello.mp4", "..%2Fmedia%2Fface.png", "x.mp4"):
        assert api.get(files + name).status_code == 404, name  # only the job's own extra files
    again = api.post(API_PREFIX + "/run", json={"face": "face.png", "audio": "speech.wav", "settings": settings,
                                               "output_name": "hello.mp4"})
    assert again.status_code == 409
    (api.policy.results_dir / "hello.mp4").unlink()  # the result gone, its extra outputs still there
    again = api.post(API_PREFIX + "/run", json={"face": "face.png", "audio": "speech.wav", "settings": settings,
                                               "output_name": "hello.mp4"})
    assert again.status_code == 409 and "hello.raw.mp4" in again.json()["detail"]
    bad = api.post(API_PREFIX + "/run", json={"face": "face.png", "audio": "speech.wav",
                                             "settings": {**settings, "extra_outputs": ["nope"]}})
    assert bad.status_code == 422 and "extra outputs" in bad.json()["detail"]


def test_batch_manifests_take_them_per_row(tmp_path, astronaut_png, speech_short):
    import json

    from wav2lip_uhq.batch import ManifestError, read_manifest

    manifest = tmp_path / "rows.csv"
    manifest.write_text(f"face,audio,out,extra-outputs\n{astronaut_png},{speech_short},a.mp4,mask;raw\n"
                        f"{astronaut_png},{speech_short},b.mp4,\n", encoding="utf-8")
    a, b = (r.config for r in read_manifest(manifest, {"extra_outputs": "debug"}, tmp_path / "o"))
    assert a.extra_outputs == ("raw", "mask") and b.extra_outputs == ("debug",)  # a row's own column wins
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text(json.dumps({"face": str(astronaut_png), "audio": str(speech_short), "extra_outputs": ["nope"]})
                     + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="line 1: extra outputs: 'nope' not one of"):
        read_manifest(jsonl, {}, tmp_path / "o")
