"""Face-parsing occlusion mask: the BiSeNet layout of ``79999_iter.pth``, safe loading, parsing and masks.

The parser checkpoint is generated here (random weights in the released layout); the real
photo is scikit-image's astronaut. Every 512 px forward pass costs about a second on CPU, so
the network runs on a handful of crops only; the ROI geometry is checked with a rule-based
stand-in parser.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skimage_data = pytest.importorskip("skimage.data")

from media_helpers import ASTRONAUT_FACE_BOX
from wav2lip_uhq.errors import CheckpointError
from wav2lip_uhq.parsing import (
    CLASSES,
    KEEP,
    BiSeNet,
    FaceParser,
    occlusion_mask,
    parsing_mask_for_roi,
    parsing_masks_for_rois,
)


# Key -> shape literals of the released 79999_iter.pth layout, checked by hand against
# zllrunning/face-parsing.PyTorch model.py (ContextPath: arm16 = ARM(256, 128), arm32 = ARM(512, 128),
# conv_avg = ConvBNReLU(512, 128, ks=1); ffm = FFM(256, 256) with conv1 256->64 and conv2 64->256;
# conv_out = BiSeNetOutput(256, 256, 19), conv_out16/32 = BiSeNetOutput(128, 64, 19); all convs
# bias=False) and its resnet.py (stem 7x7 conv 3->64; BasicBlock projection shortcut
# nn.Sequential(conv1x1, bn) -> "downsample.0"/"downsample.1"; read from the verbatim copies in
# MuseTalk musetalk/utils/face_parsing/resnet.py and wav2lip-hq face_parsing/resnet.py, the
# upstream resnet.py itself not being in the searchable index).
UPSTREAM_SHAPES = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.bn1.running_var": (64,),
    "cp.resnet.layer1.0.conv1.weight": (64, 64, 3, 3),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer2.0.downsample.1.weight": (128,),
    "cp.resnet.layer4.1.conv2.weight": (512, 512, 3, 3),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm16.conv_atten.weight": (128, 128, 1, 1),
    "cp.arm32.conv.conv.weight": (128, 512, 3, 3),
    "cp.arm32.bn_atten.running_mean": (128,),
    "cp.conv_head32.conv.weight": (128, 128, 3, 3),
    "cp.conv_head16.bn.bias": (128,),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.convblk.bn.weight": (256,),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv.conv.weight": (64, 128, 3, 3),
    "conv_out16.conv_out.weight": (19, 64, 1, 1),
    "conv_out32.conv_out.weight": (19, 64, 1, 1),
}
# 21 convs + 31 BatchNorms x 4 tensors (+ 31 num_batches_tracked); 13.3 M parameters
# (the released file is ~53 MB of fp32).
N_TENSORS = 160
N_TENSORS_WITH_BN_COUNTERS = 191
N_PARAMETERS = 13_300_416


@pytest.fixture(scope="module")
def parser_state() -> dict:
    torch.manual_seed(0)
    model = BiSeNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics so that loading them matters
        for name, t in model.state_dict().items():
            if name.endswith("running_mean"):
                t.uniform_(-0.1, 0.1)
            elif name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
    return model.state_dict()


@pytest.fixture(scope="module")
def parser_path(tmp_path_factory, parser_state) -> Path:
    path = tmp_path_factory.mktemp("parsing") / "79999_iter.pth"
    torch.save(parser_state, path)  # the released file is a bare state dict
    return path


@pytest.fixture(scope="module")
def parser(parser_path) -> FaceParser:
    return FaceParser.from_file(parser_path)


@pytest.fixture(scope="module")
def astronaut_bgr() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut()[..., ::-1])


# ---------------------------------------------------------------------------- layout and loading


def test_state_dict_layout_matches_upstream():
    model = BiSeNet()
    sd = model.state_dict()
    assert len(sd) == N_TENSORS_WITH_BN_COUNTERS
    assert len([k for k in sd if not k.endswith("num_batches_tracked")]) == N_TENSORS
    assert sum(p.numel() for p in model.parameters()) == N_PARAMETERS
    for key, shape in UPSTREAM_SHAPES.items():
        assert tuple(sd[key].shape) == shape, key
    assert len(CLASSES) == 19 and CLASSES[1] == "skin" and CLASSES[17] == "hair"


def test_import_needs_no_torch():
    code = "import sys, wav2lip_uhq.parsing; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_loads_bare_prefixed_and_counterless_state_dicts(tmp_path, parser, parser_state):
    for key, value in parser.model.state_dict().items():
        assert torch.equal(value, parser_state[key]), key
    assert not parser.model.training

    prefixed = tmp_path / "dp.pth"  # saved from nn.DataParallel
    torch.save({"module." + k: v for k, v in parser_state.items()}, prefixed)
    old = tmp_path / "old.pth"  # PyTorch < 0.4.1 saved no num_batches_tracked
    torch.save({k: v for k, v in parser_state.items() if not k.endswith("num_batches_tracked")}, old)
    for path in (prefixed, old):
        loaded = FaceParser.from_file(path)
        w = loaded.model.state_dict()["conv_out.conv_out.weight"]
        assert torch.equal(w, parser_state["conv_out.conv_out.weight"])


def _refusal(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        FaceParser.from_file(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_refuses_other_files(tmp_path, parser_state, w2l_checkpoint):
    assert "not a BiSeNet face-parsing checkpoint" in _refusal(w2l_checkpoint)

    backbone = tmp_path / "resnet18-5c106cde.pth"
    torch.save(BiSeNet().cp.resnet.state_dict(), backbone)
    assert "plain ResNet backbone" in _refusal(backbone)

    eleven = tmp_path / "eleven.pth"
    torch.save(BiSeNet(11).state_dict(), eleven)
    assert "11 classes" in _refusal(eleven)

    partial = tmp_path / "partial.pth"
    state = dict(parser_state)
    del state["ffm.conv2.weight"]
    state["ffm.conv1.weight"] = torch.zeros(32, 256, 1, 1)
    torch.save(state, partial)
    message = _refusal(partial)
    assert "1 missing (e.g. ffm.conv2.weight)" in message
    assert "ffm.conv1.weight (32, 256, 1, 1) (expected (64, 256, 1, 1))" in message

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"weights": Path("x")}, protocol=2))
    assert "refusing to unpickle" in _refusal(evil)

    html = tmp_path / "page.pth"
    html.write_text("<html>404</html>")
    assert "not a PyTorch checkpoint" in _refusal(html)

    assert "not found" in _refusal(tmp_path / "missing.pth")


# ---------------------------------------------------------------------------- parsing


def test_parse_real_photo_batched_equals_one_by_one(parser, astronaut_bgr):
    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    crops = [
        np.ascontiguousarray(astronaut_bgr[y1 - 30 : y2 + 10, x1 - 40 : x2 + 40]),  # 160x180, not square
        np.ascontiguousarray(astronaut_bgr[:, 50:562]),  # 512x512: no resizing
    ]
    batched = parser.parse(crops)
    assert [lab.shape for lab in batched] == [c.shape[:2] for c in crops]
    for lab in batched:
        assert lab.dtype == np.uint8 and lab.max() <= 18
    assert len(np.unique(batched[1])) > 1  # a real image gives a real map, even with random weights
    one_by_one = [parser.parse([c])[0] for c in crops]
    for a, b in zip(batched, one_by_one):
        np.testing.assert_array_equal(a, b)
    assert parser.parse([]) == []
    with pytest.raises(ValueError, match="BGR"):
        parser.parse([np.zeros((10, 10), np.uint8)])


# ---------------------------------------------------------------------------- masks


def test_occlusion_mask_keeps_face_parts_and_softens_inside():
    labels = np.full((120, 160), 17, np.uint8)  # hair everywhere
    labels[:, :80] = 1  # skin on the left
    labels[40:80, 20:50] = 0  # a hand in front of the cheek: "background" inside the face
    stripes = np.full((60, 19 * 12), 1, np.uint8)  # one patch of every class inside skin
    for cls in range(19):
        stripes[20:40, cls * 12 + 2 : cls * 12 + 10] = cls

    mask = occlusion_mask(labels, soften_px=3)
    assert mask.dtype == np.float32 and mask.shape == labels.shape
    keep = np.isin(labels, KEEP)
    assert (mask[~keep] == 0).all()  # hair and hand: exactly 0, not even a halo
    assert (mask[10:30, 5:70] == 1).all()  # skin away from any edge
    assert (mask[10, :77] == 1).all()
    edge = mask[10, 77:80]  # the last 3 skin pixels before the hair on their right
    assert (edge > 0).all() and (edge < 1).all() and (np.diff(edge) < 0).all()
    ring = mask[37:40, 20:50]  # the 3 skin rows just above the hand
    assert 0 < ring.min() and ring.max() < 1 and (mask[36, 20:50] == 1).all()
    assert (mask[0, :70] == 1).all()  # the image border is no edge

    stripe_mask = occlusion_mask(stripes, soften_px=0)
    for cls in range(19):
        centre = stripe_mask[30, cls * 12 + 6]
        assert centre == (1.0 if cls in KEEP else 0.0), CLASSES[cls]
    assert set(np.unique(stripe_mask)) <= {0.0, 1.0}

    neck = occlusion_mask(stripes, keep=KEEP + (14,), soften_px=0)
    assert neck[30, 14 * 12 + 6] == 1.0
    assert (occlusion_mask(np.ones((5, 5), np.uint8)) == 1).all()
    assert (occlusion_mask(np.zeros((5, 5), np.uint8)) == 0).all()


class _BrightIsSkin:
    """Stand-in parser: skin where the crop is bright, background elsewhere (deterministic geometry)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def parse(self, crops):
        self.calls.append(len(crops))
        return [np.where(c[..., 1] > 127, 1, 0).astype(np.uint8) for c in crops]


def test_roi_mask_is_in_frame_coordinates():
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[50:150, 100:220] = 255  # the "face"
    frame[60:80, 120:140] = 0  # an occluder on it
    fake = _BrightIsSkin()
    roi = (90, 40, 230, 170)
    mask = parsing_mask_for_roi(frame, roi, fake, soften_px=0)
    assert mask.shape == (130, 140) and mask.dtype == np.float32
    expected = (frame[40:170, 90:230, 1] > 127).astype(np.float32)
    np.testing.assert_array_equal(mask, expected)

    # at the frame's edge the crop is padded; several frames go through the parser in one call
    edge_roi = (0, 0, 120, 90)
    frames = [frame, frame.copy(), frame]
    masks = parsing_masks_for_rois(frames, [roi, None, edge_roi], fake, soften_px=2)
    assert fake.calls[-1] == 2
    assert masks[1] is None and masks[2].shape == (90, 120)
    np.testing.assert_array_equal(masks[0], parsing_mask_for_roi(frame, roi, fake, soften_px=2))
    np.testing.assert_array_equal(masks[2], parsing_mask_for_roi(frame, edge_roi, fake, soften_px=2))
    with pytest.raises(ValueError, match="frames"):
        parsing_masks_for_rois([frame], [], fake)


def test_roi_masks_with_the_network(parser, astronaut_bgr):
    rois = [ASTRONAUT_FACE_BOX, (ASTRONAUT_FACE_BOX[0] + 7, ASTRONAUT_FACE_BOX[1] - 5, ASTRONAUT_FACE_BOX[2] + 7, ASTRONAUT_FACE_BOX[3] - 5)]
    frames = [astronaut_bgr, astronaut_bgr]
    masks = parsing_masks_for_rois(frames, rois, parser)
    for mask, (x1, y1, x2, y2) in zip(masks, rois):
        assert mask.shape == (y2 - y1, x2 - x1) and mask.dtype == np.float32
        assert 0.0 <= mask.min() and mask.max() <= 1.0
    np.testing.assert_array_equal(masks[0], parsing_mask_for_roi(astronaut_bgr, rois[0], parser))
