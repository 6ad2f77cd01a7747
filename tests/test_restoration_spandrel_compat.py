"""Enhanced-mode restoration under spandrel 0.3.4, the version AUTOMATIC1111 1.10 and Forge pin (and
reinstall on every start), compared with this venv's spandrel 0.4.x.

``.venv-spandrel034`` (made by .ci/prepare) holds the WebUIs' pins, spandrel 0.3.4 and
spandrel-extra-arches 0.1.1, installed without dependencies. This file is also the script run
there: the dev venv's Python with that folder ahead of the repo on ``PYTHONPATH``, so 0.3.4 shadows
0.4.x. Both sides load the same checkpoints (released layouts, random weights, built here with
0.4.x), restore the same faces and upscale the same crops; the results must agree.

The face networks run at their own size on CPU, which is slow at 512 px: the small GFPGAN (our own
loader, any size) restores; the 512 px GFPGAN and RestoreFormer (spandrel's loaders) are only loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from media_helpers import ASTRONAUT_FACE_BOX
from model_helpers import random_gfpgan

REPO = Path(__file__).resolve().parents[1]
OLD_SPANDREL = REPO / ".venv-spandrel034"
OLD_VERSION = "0.3.4"


# ---------------------------------------------------------------------------- both sides


def exercise(ckpt: dict[str, str]) -> tuple[dict, dict[str, np.ndarray]]:
    """What enhanced mode does through spandrel, on the checkpoints ``ckpt``: (facts, images)."""
    import cv2
    import torch
    from skimage.data import astronaut

    from wav2lip_uhq.compositing import feather_mask
    from wav2lip_uhq.restoration import FaceRestorer, Upscaler, gfpgan_hyperparameters, restore_regions

    torch.manual_seed(0)
    photo = np.ascontiguousarray(astronaut()[..., ::-1])  # BGR like decoded frames
    facts: dict = {}
    images: dict[str, np.ndarray] = {}

    def describe(model) -> dict:
        d = model.descriptor
        return {
            "arch": model.arch,
            "purpose": d.purpose,
            "tags": list(d.tags),
            "scale": d.scale,
            "supports_half": d.supports_half,
            "supports_bfloat16": d.supports_bfloat16,
            "dtype": str(model.dtype),
            "model": type(d.model).__name__,
            "parameters": sum(p.numel() for p in d.model.parameters()),
        }

    # The released-layout GFPGAN at a size spandrel does not build: our loader, then restoration.
    small = FaceRestorer.from_file(ckpt["gfpgan_small"], batch_size=2)
    facts["gfpgan_small"] = {**describe(small), "size": small.size}
    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    faces = [photo[40:200, 150:310], photo[60:160, 180:280], photo[300:500, 100:300]]
    for i, face in enumerate(small.restore(faces)):  # 3 faces, batches of 2
        images[f"gfpgan_face{i}"] = face
    frames = [photo.copy(), cv2.flip(photo, 1), photo.copy()]
    boxes = [ASTRONAUT_FACE_BOX, (512 - x2, y1, 512 - x1, y2), None]
    masks = [feather_mask(y2 - y1, x2 - x1)] * 2 + [None]
    for i, frame in enumerate(restore_regions(frames, boxes, masks, small, strength=0.8)):
        images[f"gfpgan_frame{i}"] = frame

    # Released-size files go through spandrel's own loaders.
    full = FaceRestorer.from_file(ckpt["gfpgan_512"])
    facts["gfpgan_512"] = {**describe(full), "size": full.size}
    facts["gfpgan_512_hyperparameters"] = gfpgan_hyperparameters(full.descriptor.model.state_dict())
    del full
    restoreformer = FaceRestorer.from_file(ckpt["restoreformer"])
    facts["restoreformer"] = {**describe(restoreformer), "size": restoreformer.size}
    del restoreformer

    upscaler = Upscaler.from_file(ckpt["compact"], batch_size=2)
    facts["compact"] = describe(upscaler)
    crops = [photo[:64, :64], photo[100:137, 50:73], photo[200:264, 200:264]]
    for i, image in enumerate(upscaler.upscale(crops)):
        images[f"compact{i}"] = image
    return facts, images


# ---------------------------------------------------------------------------- spandrel 0.3.4 side


def webui_registry() -> dict:
    """What the WebUI does before us: it adds spandrel-extra-arches to spandrel's main registry (so
    its CodeFormer is there twice once we add it too). Our registry must still build, with CodeFormer."""
    import spandrel
    import spandrel_extra_arches

    from wav2lip_uhq import restoration

    restoration._registry.cache_clear()
    before = len(restoration._registry())  # extra arches added to our copy only
    spandrel.MAIN_REGISTRY.add(*spandrel_extra_arches.EXTRA_REGISTRY)
    restoration._registry.cache_clear()
    registry = restoration._registry()
    return {
        "extra_arches": spandrel_extra_arches.__version__,
        "sizes": [before, len(registry), len(spandrel.MAIN_REGISTRY)],
        "codeformer": "CodeFormer" in registry,
    }


def main(ckpt_json: str, out_dir: str) -> None:
    import spandrel

    out = Path(out_dir)
    facts, images = exercise(json.loads(Path(ckpt_json).read_text(encoding="utf-8")))
    facts["spandrel"] = [spandrel.__version__, str(Path(spandrel.__file__).resolve())]
    facts["webui_registry"] = webui_registry()
    np.savez(out / "images.npz", **images)
    (out / "facts.json").write_text(json.dumps(facts), encoding="utf-8")


# ---------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("spandrel")
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.RestoreFormer import RestoreFormer

    root = tmp_path_factory.mktemp("spandrel_compat")
    paths = {
        "gfpgan_small": root / "GFPGANv1.4-small.pth",
        "gfpgan_512": root / "GFPGANv1.4.safetensors",
        "restoreformer": root / "RestoreFormer.pth",
        "compact": root / "realesr-general-x2-tiny.pth",
    }
    small = random_gfpgan(out_size=128, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)
    torch.save({"params_ema": small.state_dict()}, paths["gfpgan_small"])
    full = {k: v.half().contiguous() for k, v in random_gfpgan().state_dict().items()}
    save_file(full, str(paths["gfpgan_512"]))
    del full
    torch.manual_seed(2)
    restoreformer = RestoreFormer(n_embed=64, embed_dim=32, ch=32, num_res_blocks=1, z_channels=32)
    torch.save({"params_ema": restoreformer.state_dict()}, paths["restoreformer"])
    torch.manual_seed(1)
    torch.save({"params": Compact(num_feat=16, num_conv=2, upscale=2).state_dict()}, paths["compact"])
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def old_spandrel() -> Path:
    packages = ("spandrel", "spandrel_extra_arches")
    if not all((OLD_SPANDREL / pkg / "__init__.py").is_file() for pkg in packages):
        if os.environ.get("WAV2LIP_UHQ_SKIP_EXTRA_ENVS") == "1":
            pytest.skip(f"{OLD_SPANDREL.name} is missing (WAV2LIP_UHQ_SKIP_EXTRA_ENVS=1)")
        pytest.fail(f"{OLD_SPANDREL} is missing: run .ci/prepare")
    return OLD_SPANDREL


@pytest.fixture(scope="module")
def old_spandrel_run(old_spandrel, checkpoints, tmp_path_factory) -> tuple[dict, dict[str, np.ndarray]]:
    out = tmp_path_factory.mktemp("spandrel034")
    ckpt_json = out / "checkpoints.json"
    ckpt_json.write_text(json.dumps(checkpoints), encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(old_spandrel), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(ckpt_json), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"under spandrel {OLD_VERSION}:\n{result.stdout}\n{result.stderr}"
    facts = json.loads((out / "facts.json").read_text(encoding="utf-8"))
    with np.load(out / "images.npz") as npz:
        images = {k: npz[k] for k in npz.files}
    return facts, images


@pytest.fixture(scope="module")
def new_spandrel_run(checkpoints) -> tuple[dict, dict[str, np.ndarray]]:
    return exercise(checkpoints)


def test_the_subprocess_ran_spandrel_034(old_spandrel_run):
    import spandrel

    version, path = old_spandrel_run[0]["spandrel"]
    assert version == OLD_VERSION
    assert Path(path).is_relative_to(OLD_SPANDREL.resolve())
    assert spandrel.__version__ != OLD_VERSION, "this side should run the dev venv's spandrel 0.4.x"


def test_same_models_loaded(old_spandrel_run, new_spandrel_run):
    old, new = old_spandrel_run[0], new_spandrel_run[0]
    for key in ("gfpgan_small", "gfpgan_512", "restoreformer", "compact"):
        assert old[key] == new[key], key
    assert old["gfpgan_small"]["tags"] == ["128px"] and old["gfpgan_small"]["size"] == 128  # our loader
    assert old["gfpgan_512"]["tags"] == [] and old["gfpgan_512"]["size"] == 512  # spandrel's
    assert (
        old["gfpgan_512_hyperparameters"]
        == new["gfpgan_512_hyperparameters"]
        == {
            "out_size": 512,
            "num_style_feat": 512,
            "num_mlp": 8,
            "narrow": 1.0,
            "different_w": True,
            "sft_half": True,
            "channel_multiplier": 2,
        }
    )
    assert (old["restoreformer"]["arch"], old["restoreformer"]["size"]) == ("RestoreFormer", 512)
    assert old["compact"]["scale"] == 2


def test_same_restored_faces_and_upscales(old_spandrel_run, new_spandrel_run):
    old, new = old_spandrel_run[1], new_spandrel_run[1]
    assert sorted(old) == sorted(new)
    for key in sorted(new):
        assert old[key].shape == new[key].shape and old[key].dtype == new[key].dtype == np.uint8, key
        diff = np.abs(old[key].astype(int) - new[key].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.001, f"{key}: differs by up to {diff.max()}"
    # and the networks did something
    assert not np.array_equal(new["gfpgan_frame0"], new["gfpgan_frame2"])
    assert np.array_equal(new["gfpgan_frame2"], old["gfpgan_frame2"])  # no box: untouched


def test_codeformer_registry_beside_the_webuis_own(old_spandrel_run):
    reg = old_spandrel_run[0]["webui_registry"]
    assert reg["codeformer"]
    before, ours, main_registry = reg["sizes"]
    assert before == ours == main_registry  # nothing added twice, nothing lost


if __name__ == "__main__":
    main(*sys.argv[1:])
