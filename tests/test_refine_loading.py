"""UHQ refinement, loading what users bring: LoRAs, textual inversions, a ``.ckpt`` single file,
and the landmark path of the sync guard.

The tiny SD components come from ``test_refine`` (built offline there); the LoRA and embedding
files are written here with random, non-zero weights. The sync guard runs with the real dlib
landmark detector on the real astronaut photo and a stand-in backend (no diffusion needed).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")

import test_refine as shared
from test_refine import SIZE, clip, options, run_session

from wav2lip_uhq.errors import InputError
from wav2lip_uhq.refine import ControlSpec, FrameJob, RefineOptions, RefineSession, create_refiner

tiny = shared.tiny  # the tiny SD components, pipeline folder, ControlNet and single file (module fixture)


def cli_refine_options(argv: list[str]) -> RefineOptions:
    """RefineOptions exactly as ``wav2lip-uhq run ... --mode uhq`` builds them."""
    from wav2lip_uhq.cli import _refine_options, build_parser

    args = build_parser().parse_args(["run", "--face", "f.png", "--audio", "a.wav", "--mode", "uhq", *argv])
    o = _refine_options(args)
    # the test's tiny working size and a short schedule; everything loaded is the user's
    return RefineOptions(
        **{
            **o.__dict__,
            **dict(
                size=SIZE,
                steps=4,
                denoise=0.5,
                cfg=2.0,
                sampler="ddim",
                prompt=o.prompt if "--prompt" in argv else "a mouth",
                negative_prompt="blur",
                batch_size=4,
                sync_tolerance=None,
                margin=0.1,
            ),
        }
    )


def refined(tiny, argv: list[str], n: int = 1) -> list[np.ndarray]:
    o = cli_refine_options(["--sd-checkpoint", str(tiny["folder"]), *argv])
    out, _ = run_session(create_refiner(o, "cpu"), *clip(n))
    return out


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    return max(int(np.abs(x.astype(int) - y).max()) for x, y in zip(a, b))


# -- LoRA ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lora_file(tiny, tmp_path_factory) -> Path:
    """A rank-4 LoRA on every attention projection of the tiny UNet, diffusers/peft layout."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    torch.manual_seed(1)
    unet = copy.deepcopy(tiny["components"]["unet"])
    unet.add_adapter(
        LoraConfig(
            r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"]
        )
    )
    sd = {k: v * 2 for k, v in get_peft_model_state_dict(unet).items()}  # a clearly visible change
    assert all(v.abs().sum() > 0 for v in sd.values())
    folder = tmp_path_factory.mktemp("lora")
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=sd, weight_name="lip_detail.safetensors"
    )
    return folder / "lip_detail.safetensors"


def test_lora_changes_the_output_and_weight_zero_does_not(tiny, lora_file):
    base = refined(tiny, [])
    with_lora = refined(tiny, ["--lora", f"{lora_file}:0.8"])
    assert max_diff(base, with_lora) > 8  # the LoRA is applied
    assert max_diff(base, refined(tiny, ["--lora", f"{lora_file}:0"])) <= 1  # weight 0: no effect
    assert max_diff(with_lora, refined(tiny, ["--lora", f"{lora_file}:0.8"])) == 0  # deterministic


def test_corrupt_or_foreign_lora_is_a_clear_error(tiny, tmp_path):
    import torch
    from safetensors.torch import save_file

    corrupt = tmp_path / "broken.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    foreign = tmp_path / "sdxl_style.safetensors"  # valid file, but nothing in it fits this model
    save_file(
        {
            "lora_unet_output_blocks_9_1_transformer_blocks_0_attn1_to_q.lora_down.weight": torch.ones(
                4, 2048
            ),
            "lora_unet_output_blocks_9_1_transformer_blocks_0_attn1_to_q.lora_up.weight": torch.ones(2048, 4),
        },
        str(foreign),
    )
    for path in (corrupt, foreign, tmp_path / "missing.safetensors"):
        with pytest.raises(InputError, match=path.name):
            refined(tiny, ["--lora", str(path)])


# -- textual inversion -----------------------------------------------------------------------------
def write_embedding(folder: Path, name: str, vectors, layout: str) -> Path:
    import torch

    if layout == "a1111":  # WebUI's .pt: {"string_to_param": {"*": [n, dim]}, ...}
        path = folder / f"{name}.pt"
        torch.save({"string_to_param": {"*": vectors}, "name": name, "step": 100}, path)
    else:  # diffusers' safetensors: {token: [n, dim]}
        from safetensors.torch import save_file

        path = folder / f"{name}.safetensors"
        save_file({name: vectors.contiguous()}, str(path))
    return path


@pytest.mark.parametrize("layout", ["diffusers", "a1111"])
def test_textual_inversion_token_changes_the_output(tiny, tmp_path, layout):
    import torch

    torch.manual_seed(2)
    hidden = tiny["components"]["text_encoder"].config.hidden_size
    emb = write_embedding(tmp_path, "lipfix", torch.randn(2, hidden) * 3, layout)
    plain = refined(tiny, ["--embedding", str(emb), "--prompt", "a mouth"])
    with_token = refined(tiny, ["--embedding", str(emb), "--prompt", "lipfix a mouth"])
    assert max_diff(plain, with_token) > 2
    if layout == "diffusers":  # loading alone changes nothing
        assert max_diff(plain, refined(tiny, ["--prompt", "a mouth"])) == 0


def test_wrong_size_embedding_is_refused(tiny, tmp_path):
    import torch

    emb = write_embedding(tmp_path, "toowide", torch.randn(1, 768), "diffusers")  # SD 1.5 width, not 16
    with pytest.raises(InputError, match=r"toowide\.safetensors.*768"):
        refined(tiny, ["--embedding", str(emb)])


# -- .ckpt single file ---------------------------------------------------------------------------------
class _Payload:
    """Unpickling this runs ``Path.touch``: what a hostile .ckpt would do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_ckpt_single_file_loads_weights_only(tiny, tmp_path):
    import torch
    from safetensors.torch import load_file

    frames, args = clip(2)
    cn = (ControlSpec(str(tiny["cn"]), "canny"),)
    ref, _ = run_session(
        create_refiner(options(checkpoint=tiny["single"], config_dir=tiny["configs"], controlnets=cn), "cpu"),
        frames,
        args,
    )
    ckpt = tmp_path / "tiny_sd15.ckpt"
    torch.save({"state_dict": load_file(str(tiny["single"])), "global_step": 10}, ckpt)
    out, _ = run_session(
        create_refiner(options(checkpoint=ckpt, config_dir=tiny["configs"], controlnets=cn), "cpu"),
        frames,
        args,
    )
    assert max_diff(ref, out) == 0

    marker = tmp_path / "executed"
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload(marker)}, hostile)
    for conf in (tiny["configs"], None):
        with pytest.raises(InputError, match=r"hostile\.ckpt.*weights-only"):
            create_refiner(options(checkpoint=hostile, config_dir=conf), "cpu")
    assert not marker.exists()
    torch.load(hostile, weights_only=False)  # the payload is real: a full unpickler runs it
    assert marker.exists()


# -- sync guard, landmark path ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def face():
    import skimage.data

    from wav2lip_uhq.faces import create_detector
    from wav2lip_uhq.faces.landmarks import create_landmark_detector

    rgb = skimage.data.astronaut()
    box = create_detector("dlib").detect([rgb])[0][0, :4]
    detector = create_landmark_detector("dlib")
    bgr = rgb[:, :, ::-1].copy()
    return bgr, box, detector.landmarks([bgr], box[None])[0], detector


def opened(frame: np.ndarray, pts: np.ndarray, d: int) -> np.ndarray:
    """The mouth opened by ``d`` pixels: lower lip and chin below the inner-lip line moved down,
    a dark cavity painted in the gap."""
    out = frame.copy()
    y = int(round(pts[[61, 62, 63, 65, 66, 67], 1].mean()))
    x1, x2 = int(pts[48, 0]) - 3, int(pts[54, 0]) + 4
    out[y + d : y + 40, x1:x2] = frame[y : y + 40 - d, x1:x2]
    out[y : y + d, x1:x2] = (25, 20, 40)
    return out


class ReplayRefiner:
    """A backend that 'refines' every crop into the same crop of ``target`` (a whole frame)."""

    def __init__(self, target: np.ndarray | None, options: RefineOptions, box) -> None:
        from wav2lip_uhq.refine.base import extract_square

        self.options = options
        self.crop = None if target is None else np.ascontiguousarray(extract_square(target, box)[:, :, ::-1])

    def refine(self, batch):
        return [im.copy() if self.crop is None else self.crop.copy() for im in batch.images]


@pytest.mark.parametrize("case", ["same", "more_open", "more_closed"])
def test_landmark_sync_guard(face, case):
    import cv2

    from wav2lip_uhq.refine.base import mouth_box
    from wav2lip_uhq.refine.consistency import landmark_opening

    bgr, box, pts, detector = face
    wide = opened(bgr, pts, 12)
    w2l, target = {"same": (bgr, None), "more_open": (bgr, wide), "more_closed": (wide, bgr)}[case]
    cx, cy = (pts[48] + pts[54]) / 2
    roi = (int(cx) - 60, int(cy) - 50, int(cx) + 60, int(cy) + 60)
    alpha = np.zeros((roi[3] - roi[1], roi[2] - roi[0]), np.float32)
    cv2.ellipse(alpha, (60, 55), (45, 40), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 3) * (alpha > 0)
    o = RefineOptions(size=128, margin=0.1, opening="landmarks", sync_tolerance=0.12)
    refiner = ReplayRefiner(target, o, mouth_box(alpha, roi, o.size, o.margin, o.mask_threshold))
    session = RefineSession(refiner, detector)
    assert session.guard.method == "landmarks"

    frame = w2l.copy()
    pasted = session.refine([FrameJob(frame, alpha, roi, None, 0)], [box])
    stats = session.stats()
    assert stats["checked"] == 1
    if case == "same":
        assert pasted == [True] and stats["rejected"] == 0
    else:
        # the target really is a different opening by the landmark measure, beyond the tolerance
        a, b = (landmark_opening(detector.landmarks([f], box[None])[0]) for f in (w2l, target))
        assert abs(a - b) > 0.15
        assert pasted == [False] and stats["rejected"] == 1
        np.testing.assert_array_equal(frame, w2l)  # the frame keeps the Wav2Lip mouth
