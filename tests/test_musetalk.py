"""MuseTalk 1.5: the user's folder loaded unchanged, MuseTalk's numerics against the goldens
from its own code (full-size whisper and VAE; the UNet at full size in one slow test), and
the generator on tiny networks through the pipeline (CPU, offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from musetalk_helpers import (
    REFERENCE,
    SPEECH,
    VAE_CONFIG,
    WHISPER_CONFIG,
    built,
)

from wav2lip_uhq.generators.musetalk import WhisperPrompts
from wav2lip_uhq.models import musetalk as mt


@pytest.fixture(scope="module")
def golden():
    return np.load(REFERENCE / "golden.npz")


def _specs(name):
    return [(k, list(s), d) for k, s, d in json.loads((REFERENCE / f"{name}.keys.json").read_text())]


def _ours(model, prefix=""):
    return [(prefix + k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]


# -- the three networks' layouts ----------------------------------------------------------------
def test_networks_have_the_released_keys_and_shapes():
    assert _ours(mt.build_unet(mt.UNET_CONFIG)) == _specs("unet")
    assert _ours(mt.build_vae(VAE_CONFIG)) == _specs("vae")
    encoder = [s for s in _specs("whisper_tiny") if s[0].startswith("encoder.")]
    assert _ours(mt.build_whisper_encoder(WHISPER_CONFIG), "encoder.") == encoder


# -- numerics against MuseTalk's own outputs ----------------------------------------------------
@pytest.fixture(scope="module")
def whisper_full():
    from musetalk_helpers import PREPROCESSOR
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(**{k: v for k, v in PREPROCESSOR.items() if k not in (
        "feature_extractor_type", "processor_class")})
    return mt.MuseTalkNetworks(None, None, built(mt.build_whisper_encoder, WHISPER_CONFIG), extractor, "cpu",
                               torch.float32)


def test_audio_prompts_per_frame_at_25_and_30_fps(golden, whisper_full):
    import soundfile as sf

    wav, rate = sf.read(SPEECH, dtype="float32")
    assert rate == 16000 and len(wav) == int(golden["n_samples"])
    mel = whisper_full.features([wav], sampling_rate=16000, return_tensors="np").input_features
    np.testing.assert_allclose(mel, golden["input_features"], atol=1e-4)  # float32 STFT order
    steps = mt.whisper_steps(whisper_full, wav)
    assert steps.shape == (len(wav) * 50 // 16000, 5, 384)
    for fps in (25, 30):
        count = mt.frame_count(len(wav) / 16000, fps, cover=False)
        assert count == golden[f"chunks{fps}_count"]
        prompts = WhisperPrompts(mt.pad_steps(steps, fps), fps, count)
        got = prompts.take(list(golden[f"chunks{fps}_index"]))
        np.testing.assert_allclose(got, golden[f"chunks{fps}"], rtol=1e-5, atol=2e-5)


def test_positional_encoding_is_musetalks(golden):
    pe = golden["audio_emb"] - golden["chunks25"][:4]
    np.testing.assert_allclose(mt.positional_encoding(50, 384)[None].repeat(4, 0), pe, atol=3e-6)


@pytest.fixture(scope="module")
def vae_full():
    """The VAE as a run has it (``to``: channels-last on the CPU)."""
    nets = mt.MuseTalkNetworks(None, built(mt.build_vae, VAE_CONFIG), None, None, "cpu", torch.float32)
    return nets.to("cpu", torch.float32)


def test_masked_and_reference_latents_are_the_vae_mean(golden, vae_full):
    latents = mt.encode_faces(vae_full, golden["crop"][None])
    np.testing.assert_allclose(latents[:, 4:], golden["ref_latents"], atol=5e-5)
    # The masked crop's constant lower half makes its GroupNorm statistics sensitive to the
    # order of float sums: agreement is ~2e-5 on average, 2e-4 at worst (values up to 0.46).
    np.testing.assert_allclose(latents[:, :4], golden["masked_latents"], atol=5e-4)
    assert np.abs(latents[:, :4] - golden["masked_latents"]).mean() < 5e-5


def test_decoded_face_within_one_level(golden, vae_full):
    faces = mt.decode_latents(vae_full, torch.from_numpy(golden["unet_out"][:1]))
    assert faces.shape == (1, 256, 256, 3) and faces.dtype == np.uint8
    assert np.abs(faces.astype(int) - golden["decoded"][:1].astype(int)).max() <= 1


@pytest.mark.slow
def test_unet_output_at_full_size(golden):
    unet = built(mt.build_unet, mt.UNET_CONFIG)
    nets = mt.MuseTalkNetworks(unet, None, None, None, "cpu", torch.float32)
    lat = np.concatenate([golden["masked_latents"], golden["ref_latents"]], axis=1)
    with torch.inference_mode():
        emb = torch.from_numpy(golden["audio_emb"][:1])
        out = nets.unet(torch.from_numpy(lat), torch.zeros((), dtype=torch.long), encoder_hidden_states=emb).sample
    np.testing.assert_allclose(out.numpy(), golden["unet_out"][:1], rtol=1e-4, atol=1e-4)
