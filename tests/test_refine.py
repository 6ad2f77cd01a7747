"""UHQ refinement (``--mode uhq``): the real diffusers backend on tiny random SD components.

Everything is built here, offline: a few-channel UNet, VAE, CLIP text encoder with a tokenizer
from a tiny vocabulary, a ControlNet from the UNet; and the same weights written as a single
file in the original SD (LDM) layout.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from wav2lip_uhq.refine import ControlSpec, FrameJob, RefineOptions, RefineSession
from wav2lip_uhq.refine.base import CropBox, extract_square, mouth_box, paste_square
from wav2lip_uhq.refine.consistency import cavity_opening

SIZE = 64


# -- tiny SD components ----------------------------------------------------------------------
def build_tiny(tmp: Path) -> dict:
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=SIZE // 4, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 16, 16), latent_channels=4,
        norm_num_groups=4, layers_per_block=1, sample_size=SIZE)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=16))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tok_dir = tmp / "tok"
    tok_dir.mkdir()
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    for m in (unet, vae, text):  # random weights with a usable scale (no NaNs, visible changes)
        m.eval()
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16))
    return dict(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler=scheduler), controlnet


def _resnet(name: str) -> str:
    for a, b in (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
                 ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")):
        name = re.sub(rf"^{a}\.", f"{b}.", name)
    return name


def unet_to_ldm(key: str, layers: int = 1) -> str:
    """diffusers UNet key -> original SD key (for the tiny 2-block UNet above: attention in down
    block 1 and up block 0, i.e. at the lower resolution, which keeps the test fast)."""
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for a, b in fixed.items():
        if key.startswith(a + "."):
            return "model.diffusion_model." + b + key[len(a):]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = 1 + i * (layers + 1) + j
        new = f"input_blocks.{idx}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"
    elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        new = f"input_blocks.{(int(m[1]) + 1) * (layers + 1)}.0.op.{m[2]}"
    elif m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
        if m[1] == "resnets":
            new = f"middle_block.{2 * int(m[2])}.{_resnet(m[3])}"
        else:
            new = f"middle_block.1.{m[3]}"
    elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = i * (layers + 1) + j
        new = f"output_blocks.{idx}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"
    elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        i = int(m[1])  # after the resnet (and the attention, in up block 0)
        new = f"output_blocks.{i * (layers + 1) + layers}.{2 if i == 0 else 1}.conv.{m[2]}"
    else:
        raise KeyError(key)
    return "model.diffusion_model." + new


def vae_to_ldm(key: str, blocks: int = 3) -> str:
    k = key
    k = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", k)
    k = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", k)
    k = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.",
               lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.block.", k)
    k = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
               lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.upsample.", k)
    k = re.sub(r"\.mid_block\.resnets\.0\.", ".mid.block_1.", k)
    k = re.sub(r"\.mid_block\.resnets\.1\.", ".mid.block_2.", k)
    for a, b in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
        k = k.replace(f".mid_block.attentions.0.{a}.", f".mid.attn_1.{b}.")
    k = k.replace(".conv_norm_out.", ".norm_out.").replace(".conv_shortcut.", ".nin_shortcut.")
    return "first_stage_model." + k


def write_sd_single_file(components: dict, path: Path) -> None:
    """The tiny UNet, VAE and text encoder in one safetensors file, original SD layout."""
    from safetensors.torch import save_file

    sd = {unet_to_ldm(k): v for k, v in components["unet"].state_dict().items()}
    for k, v in components["vae"].state_dict().items():
        new = vae_to_ldm(k)
        sd[new] = v[..., None, None] if ".mid.attn_1." in new and new.endswith("weight") and v.ndim == 2 else v
    for k, v in components["text_encoder"].state_dict().items():  # transformers >= 5.6 drops "text_model."
        sd["cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k)] = v
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from diffusers import StableDiffusionPipeline

    tmp = tmp_path_factory.mktemp("tiny_sd")
    components, controlnet = build_tiny(tmp)
    folder = tmp / "sd"
    StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder)
    controlnet.save_pretrained(tmp / "cn")
    configs = tmp / "sd_configs"  # the configs and tokenizer only: what --sd-config points to
    shutil.copytree(folder, configs, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    single = tmp / "tiny_sd15.safetensors"
    write_sd_single_file(components, single)
    return dict(components=components, controlnet=controlnet, folder=folder, cn=tmp / "cn", configs=configs,
                single=single)


def options(**kw) -> RefineOptions:
    base = dict(size=SIZE, steps=4, denoise=0.5, cfg=2.0, sampler="ddim", prompt="a mouth", negative_prompt="blur",
                batch_size=4, sync_tolerance=None, margin=0.1)
    base.update(kw)
    return RefineOptions(**base)


def make_refiner(tiny, **kw):
    from wav2lip_uhq.refine.diffusers_backend import DiffusersRefiner

    o = options(controlnets=(ControlSpec(str(tiny["cn"]), "canny", 1.0, 0.0, 1.0),), **kw)
    return DiffusersRefiner(dict(tiny["components"]), [tiny["controlnet"]], o)


def clip(n: int = 6):
    """Frames of the astronaut moving, with a soft elliptical 'mouth' mask over a roi of each."""
    import cv2
    import skimage.data

    img = skimage.data.astronaut()[:, :, ::-1]
    frames, jobs_args = [], []
    for i in range(n):
        frame = np.ascontiguousarray(img[40 + i : 200 + i, 140 + 2 * i : 320 + 2 * i])
        roi = (50, 70, 130, 150)  # x1, y1, x2, y2
        alpha = np.zeros((80, 80), np.float32)
        cv2.ellipse(alpha, (40, 40), (30, 18), 0, 0, 360, 1.0, -1)
        alpha = cv2.GaussianBlur(alpha, (0, 0), 4) * (alpha > 0)  # soft inside, exactly 0 outside
        frames.append(frame)
        jobs_args.append((alpha, roi))
    return frames, jobs_args


def run_session(refiner, frames, args, chunks=None, **kw):
    session = RefineSession(refiner)
    out = [f.copy() for f in frames]
    jobs = [FrameJob(f, a, r, None, i) for i, (f, (a, r)) in enumerate(zip(out, args))]
    for part in (chunks or [jobs]):
        session.refine(part if chunks is None else [jobs[i] for i in part], **kw)
    return out, session


# -- tests -------------------------------------------------------------------------------------
def test_crop_paste_round_trip_is_exact_where_the_mask_is_zero():
    frames, args = clip(1)
    frame, (alpha, roi) = frames[0], args[0]
    box = mouth_box(alpha, roi, SIZE, 0.1)
    assert box.side >= 60 and box.side < 120  # a square around the mask, not the frame
    out = frame.copy()
    paste_square(out, extract_square(frame, box), box, alpha, roi)
    full = np.zeros(frame.shape[:2], np.float32)
    full[roi[1] : roi[3], roi[0] : roi[2]] = alpha
    np.testing.assert_array_equal(out[full == 0], frame[full == 0])
    assert np.abs(out.astype(int) - frame).max() < 60  # resize round trip inside: close, not exact
    # a box past the frame's edge: replicated border, and nothing outside the frame is touched
    edge = CropBox(-20, -10, 80, SIZE)
    sq = extract_square(frame, edge)
    assert sq.shape == (SIZE, SIZE, 3)


def test_only_the_mask_region_changes_and_same_seed_same_output(tiny):
    refiner = make_refiner(tiny)
    frames, args = clip(4)
    out, session = run_session(refiner, frames, args)
    for f, o, (alpha, roi) in zip(frames, out, args):
        full = np.zeros(f.shape[:2], np.float32)
        full[roi[1] : roi[3], roi[0] : roi[2]] = alpha
        np.testing.assert_array_equal(o[full == 0], f[full == 0])
        assert np.abs(o.astype(int) - f)[full > 0.5].mean() > 2  # the refiner did change the mouth
    assert session.stats()["diffused"] == 4
    assert 0 < session.stats()["pixel_fraction"] < 0.35
    again, _ = run_session(refiner, frames, args)
    for a, b in zip(out, again):
        np.testing.assert_array_equal(a, b)
    other, _ = run_session(make_refiner(tiny, seed=99), frames, args)
    assert any(not np.array_equal(a, b) for a, b in zip(out, other))


def test_batching_gives_the_same_result_as_one_by_one(tiny):
    frames, args = clip(4)
    batched, _ = run_session(make_refiner(tiny, batch_size=4), frames, args)
    single, _ = run_session(make_refiner(tiny, batch_size=1), frames, args)
    for a, b in zip(batched, single):
        assert np.abs(a.astype(int) - b).max() <= 1  # float summation order only


def test_every_nth_frame_interpolates_and_progress_and_cancel(tiny):
    from wav2lip_uhq.errors import Cancelled

    frames, args = clip(5)
    seen = []
    out, session = run_session(make_refiner(tiny, every=2, temporal_blend=0.3), frames, args,
                               progress=lambda d, t: seen.append((d, t)))
    assert session.stats()["diffused"] == 3  # frames 0, 2, 4
    assert seen[-1] == (3, 3) and len(seen) >= 3  # per step and per crop
    assert all(not np.array_equal(o, f) for o, f in zip(out, frames))  # interpolated frames refined too
    with pytest.raises(Cancelled):
        run_session(make_refiner(tiny), frames, args, cancel=lambda: True)


def test_single_file_checkpoint_in_sd_layout_loads(tiny):
    from wav2lip_uhq.refine import create_refiner

    frames, args = clip(2)
    ref, _ = run_session(make_refiner(tiny), frames, args)
    cn = ControlSpec(str(tiny["cn"]), "canny")
    for ckpt, conf in ((tiny["single"], tiny["configs"]), (tiny["folder"], None)):
        loaded = create_refiner(options(checkpoint=ckpt, config_dir=conf, controlnets=(cn,)), "cpu")
        out, _ = run_session(loaded, frames, args)
        for a, b in zip(ref, out):
            assert np.abs(a.astype(int) - b).max() <= 1


def test_single_file_without_configs_is_a_clear_error(tiny, monkeypatch, tmp_path):
    from wav2lip_uhq.errors import InputError
    from wav2lip_uhq.refine import create_refiner

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(InputError, match="--sd-config"):
        create_refiner(options(checkpoint=tiny["single"]), "cpu")


def test_sync_guard_rejects_a_closed_mouth():
    from wav2lip_uhq.refine.consistency import SyncGuard

    crop = np.full((SIZE, SIZE, 3), 170, np.uint8)
    lips = np.array([[16, 32], [22, 26], [28, 25], [32, 26], [36, 25], [42, 26], [48, 32],
                     [42, 40], [36, 41], [32, 41], [28, 41], [22, 40]], np.float32)
    open_mouth = crop.copy()
    open_mouth[28:38, 20:44] = 30  # the dark cavity
    a, t = cavity_opening(open_mouth, lips)
    b, _ = cavity_opening(crop, lips, t)
    assert a > 0.25 and b == 0
    guard = SyncGuard(0.12)
    assert guard.ok_cavity(open_mouth, open_mouth, lips)
    assert not guard.ok_cavity(open_mouth, crop, lips) and guard.rejected == 1


def test_control_images():
    from wav2lip_uhq.refine.control import ControlImages

    frames, _ = clip(1)
    crop = np.ascontiguousarray(frames[0][:SIZE, :SIZE, ::-1])
    canny, tile, none = ControlImages(["canny", "tile", "none"])([crop])
    assert canny[0].shape == (SIZE, SIZE, 3) and set(np.unique(canny[0])) <= {0, 255} and canny[0].any()
    assert tile[0].shape == crop.shape and np.array_equal(none[0], crop)
    with pytest.raises(ValueError):
        ControlImages(["depth"])


def test_pipeline_uhq_mode(tiny, astronaut_png, reference, w2l_checkpoint, tmp_path):
    import soundfile as sf

    from wav2lip_uhq.config import FaceOptions, RunConfig
    from wav2lip_uhq.pipeline import LipSyncPipeline
    from wav2lip_uhq.video import EncodeSettings, iter_frames

    wav, sr = sf.read(reference / "speech_16k.wav", dtype="float32")
    audio = tmp_path / "short.wav"
    sf.write(audio, wav[int(0.5 * sr) : int(0.74 * sr)], sr)  # 6 frames at 25 fps
    pipe = LipSyncPipeline("cpu")
    common = dict(face=astronaut_png, audio=audio, checkpoint=w2l_checkpoint, faces=FaceOptions(detector="dlib"),
                  encode=EncodeSettings(lossless=True), cache_dir=tmp_path / "c", batch_size=4)
    improved = pipe.run(RunConfig(out=tmp_path / "i.mkv", mode="improved", **common))
    stages = []
    uhq = pipe.run(RunConfig(out=tmp_path / "u.mkv", mode="uhq", refine=options(
        checkpoint=tiny["folder"], controlnets=(ControlSpec(str(tiny["cn"]), "canny"),), opening="cavity"),
        extra_outputs=("composited",), **common), progress=lambda s, d, t: stages.append(s))
    a = np.stack(list(iter_frames(improved.output))).astype(int)
    b = np.stack(list(iter_frames(uhq.output))).astype(int)
    assert a.shape == b.shape and a.shape[0] >= 6
    changed = np.abs(a - b).max(axis=(0, 3)) > 0
    ys, xs = np.nonzero(changed)
    assert len(ys) > 500  # the mouth was refined
    src = next(iter_frames(astronaut_png))
    face_changed = np.abs(a[0] - src).max(axis=2) > 0  # improved's own mask region
    assert ys.min() >= np.nonzero(face_changed)[0].min() - 2  # nothing above the compositing mask
    assert any(s.startswith("refining, crop ") for s in stages)  # the status counts the refined crops
    # the composited extra output is the frame before refinement: what improved mode makes
    np.testing.assert_array_equal(np.stack(list(iter_frames(uhq.extra_outputs["composited"]))).astype(int), a)
