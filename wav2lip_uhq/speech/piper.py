"""The neural voice: Piper (VITS voices exported to ONNX) through the ``piper-tts`` wheel, which
needs onnxruntime and no torch. A voice (``.onnx`` + ``.onnx.json``) is downloaded on first use
into ``<models folder>/piper`` through the checkpoints' verified download; a voice file put there
by hand is used as it is.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoints import KnownCheckpoint, fetch_verified, models_dir
from .espeak import SpeechError

log = logging.getLogger(__name__)

SUBDIR = "piper"
BASE_URL = "https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0"
DEFAULT_VOICE = "en_US-lessac-medium"


@dataclass(frozen=True)
class PiperVoiceInfo:
    """A released Piper voice: the model and its config, each a verified download."""

    id: str  # en_US-lessac-medium
    description: str
    model: KnownCheckpoint
    config: KnownCheckpoint

    @property
    def language(self) -> str:
        return self.id.split("_")[0]


def _released(voice_id: str, description: str, min_mb: int) -> PiperVoiceInfo:
    """A voice of the rhasspy/piper-voices v1.0.0 release. Only MD5 sums are published for them (no
    SHA-256), so a download is checked by size bounds; a wrong file fails to load as a model."""
    lang, name, quality = voice_id.split("-")
    folder = f"{BASE_URL}/{lang.split('_')[0]}/{lang}/{name}/{quality}/{voice_id}"
    model = KnownCheckpoint(voice_id, f"{voice_id}.onnx", "voice", description, (f"{folder}.onnx",),
                            min_mb * 1_000_000, max_size=200_000_000)
    config = KnownCheckpoint(f"{voice_id} config", f"{voice_id}.onnx.json", "voice", description,
                             (f"{folder}.onnx.json",), 100, max_size=2_000_000)
    return PiperVoiceInfo(voice_id, description, model, config)


VOICES: dict[str, PiperVoiceInfo] = {
    v.id: v
    for v in (
        _released("en_US-lessac-medium", "English (US), male, medium quality", 50),
        _released("en_US-amy-medium", "English (US), female, medium quality", 50),
        _released("en_GB-alba-medium", "English (UK), female, medium quality", 50),
        _released("de_DE-thorsten-medium", "German, male, medium quality", 50),
        _released("fr_FR-siwis-medium", "French, female, medium quality", 50),
        _released("es_ES-davefx-medium", "Spanish (Spain), male, medium quality", 50),
        _released("it_IT-riccardo-x_low", "Italian, male, low quality (small)", 15),
    )
}


def available() -> bool:
    try:
        import piper  # noqa: F401
    except ImportError:
        return False
    return True


def voice_folder(directory: str | Path | None) -> Path:
    return models_dir(directory) / SUBDIR


def local_voices(directory: str | Path | None) -> list[str]:
    """Voices in the models folder that are not released ones (put there by hand)."""
    folder = voice_folder(directory)
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.glob("*.onnx")
                  if p.name[:-5] not in VOICES and Path(f"{p}.json").is_file())


def voice_files(voice: str, directory: str | Path | None, allow_download: bool,
                progress: Callable[[int, int], None] | None = None) -> tuple[Path, Path]:
    """(model, config) of ``voice`` in the models folder, downloaded first where allowed."""
    voice = voice or DEFAULT_VOICE
    folder = voice_folder(directory)
    model, config = folder / f"{voice}.onnx", folder / f"{voice}.onnx.json"
    if model.is_file() and config.is_file():
        return model, config
    info = VOICES.get(voice)
    if info is None:
        raise SpeechError(f"unknown Piper voice {voice!r}: not a released voice ({', '.join(VOICES)}) and no "
                          f"{model.name} with its .json in {folder}")
    if not allow_download:
        raise SpeechError(f"{model}: the Piper voice {voice} is not in the models folder (downloads are off)")
    log.info("downloading the Piper voice %s into %s", voice, folder)
    if not config.is_file():
        fetch_verified(info.config, config)
    if not model.is_file():
        fetch_verified(info.model, model, progress)
    return model, config


@functools.lru_cache(maxsize=2)
def _load(model: str, config: str, mtime_ns: int):
    """A loaded voice, kept for the next request (keyed by the file and its modification time)."""
    from piper import PiperVoice

    return PiperVoice.load(model, config_path=config)


def load_voice(model: Path, config: Path):
    try:
        import piper  # noqa: F401
    except ImportError:
        raise SpeechError('the Piper voices need piper-tts: pip install "wav2lip-uhq[speech]"') from None
    try:
        return _load(str(model), str(config), model.stat().st_mtime_ns)
    except (OSError, ValueError, RuntimeError) as exc:  # onnxruntime raises its own subclasses of these
        raise SpeechError(f"{model}: not a usable Piper voice ({exc})") from None


def synthesize(text: str, voice_obj, speed: float = 1.0) -> tuple[np.ndarray, int]:
    """(int16 mono samples, sample rate) of ``text`` from a loaded voice; ``speed`` > 1 is faster."""
    from piper import SynthesisConfig

    chunks = list(voice_obj.synthesize(text, syn_config=SynthesisConfig(length_scale=1.0 / speed)))
    rate = int(voice_obj.config.sample_rate)
    if not chunks:
        return np.zeros(0, np.int16), rate
    return np.concatenate([np.asarray(c.audio_int16_array, np.int16).reshape(-1) for c in chunks]), rate
