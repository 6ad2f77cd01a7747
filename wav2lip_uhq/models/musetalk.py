"""MuseTalk (1.5, and 1.0's UNet) from the user's files, unchanged, and its numerics.

The three networks are built with diffusers (``UNet2DConditionModel``, ``AutoencoderKL``) and
transformers (the ``WhisperModel`` encoder, ``WhisperFeatureExtractor``) from the configs in
the user's folder; weights are read weights-only by ``loading.read_state_dict`` (never
``from_pretrained``, which unpickles ``.bin`` files fully on old transformers).
The folder layout is ``musetalk_layout``'s (MuseTalk's download script's).

Numerics (shared/docs/musetalk-facts.md): whisper-tiny hidden states (embedding + 4 layers)
at 50 steps per second; per frame 10 steps of a zero-padded sequence (50 tokens of 384) plus
a sinusoidal positional encoding; the 256 px crop with its lower half zeroed and the whole
crop VAE-encoded (the posterior mean) x 0.18215; one UNet step at timestep 0; the decode.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..musetalk_layout import UNET_FOLDERS, MuseTalkFiles, find_files, musetalk_root  # noqa: F401 - re-exported
from .loading import read_state_dict

log = logging.getLogger(__name__)

VAE_SCALE = 0.18215  # sd-vae-ft-mse's latent scaling factor, as MuseTalk uses it
STEPS_PER_SECOND = 50  # whisper encoder steps (20 ms each)
WINDOW_STEPS = 10  # steps per frame: 10 steps x 5 hidden states = 50 tokens
SEGMENT_SECONDS = 30  # whisper's input length
FACE_SIZE = 256

# MuseTalk's released musetalk.json (1.0 and 1.5): SD 1.x layout, 8 input channels, whisper-tiny width.
UNET_CONFIG: dict = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
# Foreign files recognised by their keys, for a message that says what was given instead.
_FOREIGN = {
    "encoder.down_blocks.": "a VAE (it belongs in sd-vae/)",
    "encoder.conv1.": "a whisper model (it belongs in whisper/)",
    "model.encoder.conv1.": "a whisper model (it belongs in whisper/)",
}


def is_musetalk_unet(shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """A MuseTalk UNet by its keys: SD's UNet with 8 input channels and 384-d cross-attention."""
    conv_in = shapes.get("conv_in.weight")
    to_k = shapes.get("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight")
    return conv_in is not None and len(conv_in) == 4 and conv_in[1] == 8 and to_k is not None and to_k[-1] == 384


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON config ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return data


def _load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    """Strict, shape-checked load; the message names the file and the first mismatches."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if missing or unexpected or wrong:
        for prefix, foreign in _FOREIGN.items():
            if any(k.startswith(prefix) for k in have) and not any(k.startswith(prefix) for k in want):
                raise CheckpointError(f"{path}: this is {foreign}, not {what}")
        detail = "; ".join(
            f"{n} {label} (e.g. {items[0]})"
            for label, items, n in (("missing", missing, len(missing)), ("unexpected", unexpected, len(unexpected)),
                                    ("with other shapes", wrong, len(wrong)))
            if items
        )
        raise CheckpointError(f"{path}: not {what}: {detail}")
    model.load_state_dict(dict(state), strict=True, assign=True)


def build_unet(config: Mapping) -> torch.nn.Module:
    """MuseTalk's UNet from its config, on the meta device (weights come from the file)."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel.from_config(dict(config))


def build_vae(config: Mapping) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        return AutoencoderKL.from_config(dict(config))


def build_whisper_encoder(config: Mapping) -> torch.nn.Module:
    """Only the encoder of ``WhisperModel`` (MuseTalk never runs the decoder)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(**{k: v for k, v in config.items() if not k.startswith("_")})
    with torch.device("meta"):
        return WhisperEncoder(cfg)


def vae_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """sd-vae-ft-mse as released (diffusers' older attention names query/key/value/proj_attn)
    in today's names; 1x1-conv attention weights as linear ones."""
    names = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}
    out = {}
    for k, v in state.items():
        if ".attentions." in k:
            for old, new in names.items():
                k = k.replace(old, new)
            if v.ndim == 4 and v.shape[2:] == (1, 1):
                v = v[:, :, 0, 0]
        out[k] = v
    return out


def whisper_encoder_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's entries of a whisper checkpoint (``model.`` of the generation model stripped)."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("model.")
        if k.startswith("encoder."):
            out[k[8:]] = v
    return out


@dataclass
class MuseTalkNetworks:
    """The loaded networks on one device and dtype, and the feature extractor."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    whisper: torch.nn.Module
    features: object  # transformers.WhisperFeatureExtractor
    device: str
    dtype: torch.dtype
    files: MuseTalkFiles | None = None

    def to(self, device: str, dtype: torch.dtype) -> MuseTalkNetworks:
        """On ``device`` in ``dtype``; on the CPU the VAE in channels-last memory (oneDNN's
        faster convolutions: 10-15 % per encode and decode, the same values within fp32's
        rounding)."""
        for m in (self.unet, self.vae, self.whisper):
            if m is None:
                continue
            # torch's own Module.to: diffusers' override warns about fp32-only modules these lack
            torch.nn.Module.to(m, device=device).eval()
            if next(m.parameters()).dtype != dtype:
                torch.nn.Module.to(m, dtype=dtype)
        if self.vae is not None and device == "cpu":
            torch.nn.Module.to(self.vae, memory_format=torch.channels_last)
        self.device, self.dtype = device, dtype
        return self


def load_networks(files: MuseTalkFiles, device: str = "cpu", dtype: torch.dtype = torch.float32,
                  trust_torchscript: bool = False) -> MuseTalkNetworks:
    """The three networks from the user's files (weights-only), in eval mode."""
    from transformers import WhisperFeatureExtractor

    unet_state = read_state_dict(files.unet, trust_torchscript)
    unet = build_unet(_read_json(files.unet_config))
    _load_into(unet, unet_state, files.unet, "a MuseTalk UNet")
    del unet_state
    vae = build_vae(_read_json(files.vae_config))
    _load_into(vae, vae_state(read_state_dict(files.vae_weights)), files.vae_weights, "the sd-vae VAE")
    whisper = build_whisper_encoder(_read_json(files.whisper_config))
    _load_into(whisper, whisper_encoder_state(read_state_dict(files.whisper_weights)), files.whisper_weights,
               "a whisper model")
    try:
        extractor = WhisperFeatureExtractor.from_pretrained(str(files.whisper_preprocessor.parent))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{files.whisper_preprocessor}: not a whisper feature-extractor config ({exc})") from exc
    log.info("loaded MuseTalk %s from %s", files.version, files.root)
    return MuseTalkNetworks(unet, vae, whisper, extractor, device, dtype, files).to(device, dtype)


# -- audio ------------------------------------------------------------------------------------
def whisper_steps(nets: MuseTalkNetworks, wav: np.ndarray, sample_rate: int = 16000, batch: int = 4) -> np.ndarray:
    """(floor(seconds x 50), 5, 384) float32: whisper's hidden states (embedding + every layer)
    per 20 ms step, 30 s segments concatenated (MuseTalk's audio features)."""
    seg = SEGMENT_SECONDS * sample_rate
    segments = [wav[i : i + seg] for i in range(0, max(len(wav), 1), seg)]
    out = []
    for i in range(0, len(segments), batch):
        mel = nets.features(segments[i : i + batch], sampling_rate=sample_rate, return_tensors="np").input_features
        out.append(encode_mel(nets, mel))
    steps = np.concatenate(out).reshape(-1, *out[0].shape[2:])
    return steps[: len(wav) * STEPS_PER_SECOND // sample_rate]


def encode_mel(nets: MuseTalkNetworks, mel: np.ndarray) -> np.ndarray:
    """(B, 80, 3000) log-mel -> (B, 1500, n_layers + 1, d) hidden states, float32."""
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(mel)).to(nets.device, nets.dtype)
        hidden = nets.whisper(x, output_hidden_states=True).hidden_states
        return torch.stack(hidden, dim=2).float().cpu().numpy()


def frame_count(seconds: float, fps: float, cover: bool) -> int:
    """MuseTalk's floor(seconds x fps); ``cover``: enough frames for the whole audio."""
    return math.ceil(seconds * fps - 1e-6) if cover else int(seconds * fps)


def pad_steps(steps: np.ndarray, fps: float) -> np.ndarray:
    """The sequence with 2 x ceil(50 / fps) zero steps before and 6 x ceil(50 / fps) after."""
    unit = math.ceil(STEPS_PER_SECOND / fps)
    return np.pad(steps, ((2 * unit, 6 * unit), (0, 0), (0, 0)))


def frame_prompts(padded: np.ndarray, indices, fps: float) -> np.ndarray:
    """(N, 50, 384): per output frame, the 10 padded steps from floor(i x 50 / fps), step-major."""
    starts = [int(i * STEPS_PER_SECOND / fps) for i in indices]
    need = max(starts, default=0) + WINDOW_STEPS
    if need > len(padded):  # frames past the audio (a covering run's last one): silence of zeros
        padded = np.pad(padded, ((0, need - len(padded)), (0, 0), (0, 0)))
    windows = np.stack([padded[s : s + WINDOW_STEPS] for s in starts]) if starts else padded[:0, :WINDOW_STEPS]
    return windows.reshape(len(starts), -1, padded.shape[-1])


def positional_encoding(length: int, d_model: int) -> np.ndarray:
    """(length, d_model) float32: sin on even, cos on odd channels, 10000^(2i/d) periods (in
    torch's float32 arithmetic, as MuseTalk computes it: numpy's differs by ~1e-5)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe.numpy()


# -- image ------------------------------------------------------------------------------------
def encode_faces(nets: MuseTalkNetworks, crops_bgr: np.ndarray) -> np.ndarray:
    """(N, 256, 256, 3) uint8 BGR crops -> (N, 8, 32, 32) float32: the masked crop's latents
    (lower half zeroed), then the whole crop's, each the posterior mean x 0.18215."""
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(crops_bgr[..., ::-1])).to(nets.device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        masked = x.clone()
        masked[:, :, x.shape[2] // 2 :] = 0
        both = torch.cat([masked, x]) * 2.0 - 1.0
        mean = nets.vae.encode(both.to(nets.dtype)).latent_dist.mean.float() * VAE_SCALE
        n = len(crops_bgr)
        return torch.cat([mean[:n], mean[n:]], dim=1).cpu().numpy()


def generate_faces(nets: MuseTalkNetworks, latents: np.ndarray, prompts: np.ndarray) -> np.ndarray:
    """One UNet step at timestep 0 and the VAE decode: (N, 256, 256, 3) uint8 BGR.
    ``prompts`` (N, 50, 384) are the audio windows without the positional encoding."""
    with torch.inference_mode():
        emb = prompts + positional_encoding(prompts.shape[1], prompts.shape[2])
        emb_t = torch.from_numpy(np.ascontiguousarray(emb, np.float32)).to(nets.device, nets.dtype)
        lat = torch.from_numpy(np.ascontiguousarray(latents, np.float32)).to(nets.device, nets.dtype)
        t = torch.zeros((), device=nets.device, dtype=torch.long)
        pred = nets.unet(lat, t, encoder_hidden_states=emb_t).sample
        return decode_latents(nets, pred)


def decode_latents(nets: MuseTalkNetworks, latents: torch.Tensor) -> np.ndarray:
    """The VAE decode as MuseTalk does it: /0.18215, (x / 2 + 0.5) clamped, x255 rounded, BGR."""
    with torch.inference_mode():
        img = nets.vae.decode(latents.to(nets.device, nets.dtype) / VAE_SCALE).sample.float()
        img = ((img / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return np.ascontiguousarray(img.permute(0, 2, 3, 1).cpu().numpy()[..., ::-1])
