"""MuseTalk test material: the reference fill rule, tiny configurations and folders in the
released layout (nothing downloaded)."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import torch

from wav2lip_uhq.models import musetalk as mt

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "musetalk"
SPEECH = REFERENCE.parent / "speech_16k.wav"

VAE_CONFIG = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
    "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 256,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
WHISPER_CONFIG = {
    "_name_or_path": "openai/whisper-tiny", "d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6,
    "decoder_layers": 4, "decoder_attention_heads": 6, "encoder_ffn_dim": 1536, "decoder_ffn_dim": 1536,
    "num_mel_bins": 80, "max_source_positions": 1500, "max_target_positions": 448, "vocab_size": 51865,
}
PREPROCESSOR = {
    "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 80, "hop_length": 160,
    "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right", "padding_value": 0.0,
    "processor_class": "WhisperProcessor", "return_attention_mask": False, "sampling_rate": 16000,
}
TINY_UNET = {**mt.UNET_CONFIG, "block_out_channels": [16, 16, 16, 16], "layers_per_block": 1,
             "norm_num_groups": 4, "attention_head_dim": 4}
TINY_VAE = {**VAE_CONFIG, "block_out_channels": [8, 8, 8, 8], "layers_per_block": 1, "norm_num_groups": 4}
TINY_WHISPER = {**WHISPER_CONFIG, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "encoder_layers": 4}


def fill(model: torch.nn.Module, prefix: str = "") -> torch.nn.Module:
    """The reference fill rule (shared/reference/musetalk/README.md), in place; ``prefix``: the
    module's place in the reference's state dict (whisper's encoder is ``encoder.``)."""
    state = {}
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            state[k] = v
            continue
        g = torch.Generator().manual_seed(zlib.crc32((prefix + k).encode()))
        shape = tuple(v.shape)
        if len(shape) == 1:
            t = 0.1 * torch.randn(shape, generator=g)
            if k.endswith(".weight") and "norm" in k[: -len(".weight")]:
                t = t + 1.0
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        state[k] = t
    model.load_state_dict(state, strict=True, assign=True)
    return model


def built(builder, config) -> torch.nn.Module:
    """A network from ``builder`` with the fill rule's weights, on the CPU."""
    prefix = "encoder." if builder is mt.build_whisper_encoder else ""
    return fill(builder(config).to_empty(device="cpu"), prefix).eval()


def write_folder(root: Path, unet=TINY_UNET, vae=TINY_VAE, whisper=TINY_WHISPER, version: str = "1.5",
                 old_vae_names: bool = True, safetensors_vae: bool = False) -> Path:
    """A MuseTalk models folder in the download script's layout with fill-rule weights (the VAE
    in the released file's older attention names, whisper as the generation model's keys)."""
    folder, unet_name = ("musetalkV15", "unet.pth") if version == "1.5" else ("musetalk", "pytorch_model.bin")
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "musetalk.json").write_text(json.dumps(unet))
    torch.save(built(mt.build_unet, unet).state_dict(), root / folder / unet_name)
    (root / "sd-vae").mkdir(exist_ok=True)
    (root / "sd-vae" / "config.json").write_text(json.dumps(vae))
    vae_sd = built(mt.build_vae, vae).state_dict()
    if old_vae_names:
        rename = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
        for new, old in rename.items():
            vae_sd = {k.replace(new, old): v for k, v in vae_sd.items()}
    if safetensors_vae:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in vae_sd.items()},
                  str(root / "sd-vae" / "diffusion_pytorch_model.safetensors"))
    else:
        torch.save(vae_sd, root / "sd-vae" / "diffusion_pytorch_model.bin")
    (root / "whisper").mkdir(exist_ok=True)
    (root / "whisper" / "config.json").write_text(json.dumps(whisper))
    (root / "whisper" / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    enc = built(mt.build_whisper_encoder, whisper).state_dict()
    torch.save({f"model.encoder.{k}": v for k, v in enc.items()}, root / "whisper" / "pytorch_model.bin")
    return root
