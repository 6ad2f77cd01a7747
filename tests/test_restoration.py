"""Face restoration and super-resolution through spandrel, with locally built random-weight models.

GFPGAN is built at 128 px with narrow channels so that a forward pass takes a fraction of a
second on CPU; one full-size (512 px) GFPGAN is built to check that released-size files take
spandrel's own loading path.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("spandrel")

from media_helpers import ASTRONAUT_FACE_BOX
from model_helpers import random_gfpgan
from wav2lip_uhq.compositing import feather_mask
from wav2lip_uhq.errors import CheckpointError
from wav2lip_uhq.restoration import (
    FaceRestorer,
    Upscaler,
    blend,
    gfpgan_hyperparameters,
    restore_region,
    restore_regions,
)



@pytest.fixture(scope="module")
def small_gfpgan_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("restore") / "GFPGANv1.4-small.pth"
    model = random_gfpgan(out_size=128, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)
    torch.save({"params_ema": model.state_dict()}, path)  # the released layout
    return path


@pytest.fixture(scope="module")
def restorer(small_gfpgan_path) -> FaceRestorer:
    return FaceRestorer.from_file(small_gfpgan_path, batch_size=8)


@pytest.fixture(scope="module")
def compact_path(tmp_path_factory) -> Path:
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("sr") / "realesr-general-x2-tiny.pth"
    torch.save({"params": Compact(num_feat=16, num_conv=2, upscale=2).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage.data import astronaut

    return np.ascontiguousarray(astronaut()[..., ::-1])  # BGR like decoded frames


def _mask() -> np.ndarray:
    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    return feather_mask(y2 - y1, x2 - x1)


def test_recognised_asrandom_gfpgan(restorer):
    assert restorer.arch == "GFPGAN"
    assert restorer.size == 128
    assert restorer.descriptor.purpose == "FaceSR"


def test_released_size_gfpgan_loads_through_spandrel(tmp_path):
    from safetensors.torch import save_file

    model = random_gfpgan()  # spandrel's defaults: 512 px, channel multiplier 2
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    # Our reading of the hyperparameters agrees with the layout spandrel builds.
    assert gfpgan_hyperparameters(state) == {
        "out_size": 512,
        "num_style_feat": 512,
        "num_mlp": 8,
        "narrow": 1.0,
        "different_w": True,
        "sft_half": True,
        "channel_multiplier": 2,
    }
    path = tmp_path / "GFPGANv1.4.safetensors"
    save_file(state, str(path))
    del model, state
    r = FaceRestorer.from_file(path)
    assert (r.arch, r.size, r.descriptor.tags) == ("GFPGAN", 512, [])  # spandrel's loader, not our fallback


def test_restore_changes_only_inside_mask(restorer, astronaut):
    frame = astronaut.copy()
    mask = _mask()
    out = restore_region(frame, ASTRONAUT_FACE_BOX, mask, restorer, strength=1.0)
    assert out.shape == astronaut.shape and out.dtype == np.uint8

    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    full_mask = np.zeros(astronaut.shape[:2], np.float32)
    full_mask[y1:y2, x1:x2] = mask
    changed = (out != astronaut).any(-1)
    assert not changed[full_mask == 0].any(), "pixels outside the mask changed"
    # A random network certainly changes most of the strongly weighted pixels.
    assert changed[full_mask > 0.5].mean() > 0.5


def test_strength(restorer, astronaut):
    zero = restore_region(astronaut.copy(), ASTRONAUT_FACE_BOX, _mask(), restorer, strength=0.0)
    assert np.array_equal(zero, astronaut)

    full = restore_region(astronaut.copy(), ASTRONAUT_FACE_BOX, _mask(), restorer, strength=1.0).astype(np.float32)
    half = restore_region(astronaut.copy(), ASTRONAUT_FACE_BOX, _mask(), restorer, strength=0.5).astype(np.float32)
    expected = astronaut + 0.5 * (full - astronaut)
    assert np.abs(half - expected).max() <= 1.0


def test_batched_equals_one_by_one_and_is_one_call(restorer, astronaut):
    import cv2

    big = np.zeros((720, 1280, 3), np.uint8)
    big[100:612, 300:812] = astronaut
    frames = [astronaut, cv2.flip(astronaut, 1), big, astronaut]
    boxes = [ASTRONAUT_FACE_BOX, (512 - 275, 60, 512 - 175, 180), (475, 160, 575, 280), None]
    masks = [_mask(), _mask(), _mask(), None]

    singles = [
        restore_region(f.copy(), b, m, restorer) if b else f.copy() for f, b, m in zip(frames, boxes, masks)
    ]

    calls = []
    handle = restorer.descriptor.model.register_forward_hook(
        lambda mod, inp, out: calls.append(inp[0].shape[0])
    )
    try:
        batched = restore_regions([f.copy() for f in frames], boxes, masks, restorer)
    finally:
        handle.remove()
    assert calls == [3], "the three faces should go through the network in one batch"
    for a, b in zip(batched, singles):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert np.array_equal(batched[3], astronaut)


def test_face_at_the_frame_edge(restorer, astronaut):
    # The square crop leaves the frame: padded, not distorted or out of bounds.
    box = (0, 400, 100, 512)
    mask = np.ones((112, 100), np.float32)
    mask[:, :50] = 0
    out = restore_region(astronaut.copy(), box, mask, restorer)
    changed = (out != astronaut).any(-1)
    assert changed[400:512, 50:100].any()
    assert not changed[:, :50].any() and not changed[:400].any() and not changed[:, 100:].any()


def test_blend_is_exact_where_weight_is_zero():
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(2))
    w = np.zeros((8, 8), np.float32)
    w[2:4] = 0.25
    out = blend(a, b, w)
    assert np.array_equal(out[w == 0], a[w == 0])
    assert np.array_equal(blend(a, b, 1.0), b)


def test_non_face_model_rejected(compact_path):
    with pytest.raises(CheckpointError) as err:
        FaceRestorer.from_file(compact_path)
    assert str(compact_path) in str(err.value) and "not a face-restoration model" in str(err.value)


def test_upscaler_uses_the_model_scale(compact_path, astronaut):
    up = Upscaler.from_file(compact_path)
    assert up.scale == 2
    images = [astronaut[:96, :96], astronaut[100:137, 50:73], astronaut[200:296, 200:296]]
    out = up.upscale(images)
    assert [o.shape for o in out] == [(192, 192, 3), (74, 46, 3), (192, 192, 3)]
    assert all(o.dtype == np.uint8 for o in out)
    # Same-size images batched together give what they give alone.
    assert np.abs(up.upscale([images[2]])[0].astype(int) - out[2]).max() <= 1


def test_face_model_rejected_as_upscaler(small_gfpgan_path):
    with pytest.raises(CheckpointError, match="face-restoration model, not a super-resolution model"):
        Upscaler.from_file(small_gfpgan_path)


def test_unknown_state_dict_rejected(tmp_path):
    path = tmp_path / "random.pth"
    torch.save({"foo.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(CheckpointError, match="not a model architecture spandrel recognises") as err:
        FaceRestorer.from_file(path)
    assert str(path) in str(err.value)


class _Touch:
    """Unpickling this creates a file: proof that a loader ran code from the checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("cls", [FaceRestorer, Upscaler])
def test_pickle_with_code_refused(tmp_path, cls):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save(
        {"params_ema": {"conv.weight": torch.zeros(1)}, "x": _Touch(marker)}, path, pickle_module=pickle
    )
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        cls.from_file(path)
    assert not marker.exists()


def test_codeformer_without_extra_arches_is_explained(tmp_path):
    pytest.importorskip("spandrel")
    try:
        import spandrel_extra_arches  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("spandrel-extra-arches is installed: CodeFormer is supported")
    path = tmp_path / "codeformer.pth"
    keys = ["idx_pred_layer.1.weight", "quantize.embedding.weight", "encoder.blocks.0.weight", "position_emb"]
    torch.save({"params_ema": {k: torch.zeros(2, 2) for k in keys}}, path)
    with pytest.raises(CheckpointError, match="spandrel-extra-arches"):
        FaceRestorer.from_file(path)


class _Negative:
    """A stand-in restorer with a known output (the photo negative) to check the crop geometry."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def restore(self, faces):
        self.sizes += [f.shape[:2] for f in faces]
        return [255 - f for f in faces]


@pytest.mark.parametrize("box", [ASTRONAUT_FACE_BOX, (0, 400, 100, 512), (430, 0, 512, 90)])
def test_restored_crop_lands_on_the_box(astronaut, box):
    x1, y1, x2, y2 = box
    fake = _Negative()
    out = restore_region(astronaut.copy(), box, np.ones((y2 - y1, x2 - x1), np.float32), fake)  # type: ignore[arg-type]
    assert np.array_equal(out[y1:y2, x1:x2], 255 - astronaut[y1:y2, x1:x2])
    outside = np.ones(astronaut.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    assert np.array_equal(out[outside], astronaut[outside])
    side = fake.sizes[0][0]
    assert fake.sizes == [(side, side)] and side >= 1.5 * max(x2 - x1, y2 - y1)  # square, with a margin
