"""Text to speech in front of the lip sync: the pipeline never knows about it.

Text (or a text file) is split at sentence ends, each sentence spoken by an engine, joined with a
pause, and written as a WAV into the cache, keyed by everything that changes the sound (text,
engine, voice, speed, pause); the run then takes that WAV as its audio, and the audio is saved
next to the result. Engines: ``espeak`` (offline, shipped by the ``espeakng-loader`` wheel) and
``piper`` (neural ONNX voices, downloaded on first use). Neither pulls torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import wave
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_atomic
from . import espeak, piper
from .espeak import SpeechError
from .text import split_sentences

log = logging.getLogger(__name__)

ENGINES = ("espeak", "piper")
FORMAT_VERSION = 1  # part of the cache key: bump when the same settings would sound different
MAX_TEXT_CHARS = 100_000


def default_voice(engine: str) -> str:
    return piper.DEFAULT_VOICE if engine == "piper" else espeak.DEFAULT_VOICE


def voice_list(engine: str, models_dir: str | Path | None = None) -> list[tuple[str, str, str]]:
    """(language, voice id, label) of every voice of ``engine``, grouped by language."""
    if engine == "piper":
        out = [(v.language, v.id, f"{v.id} — {v.description}") for v in piper.VOICES.values()]
        out += [(name.split("_")[0], name, f"{name} — in the models folder") for name in piper.local_voices(models_dir)]
        return sorted(out)
    if engine != "espeak":
        raise SpeechError(f"unknown voice engine {engine!r} (choose from {', '.join(ENGINES)})")
    if not espeak.available():  # no list without the wheel; speaking says how to install it
        return []
    return [(v.language, v.id, f"{v.id} — {v.name}") for v in espeak.voices()]


def languages(engine: str, models_dir: str | Path | None = None) -> list[str]:
    return sorted({lang for lang, _, _ in voice_list(engine, models_dir)})


def voices_for(engine: str, language: str | None, models_dir: str | Path | None = None) -> list[tuple[str, str]]:
    """(label, id) of the voices of one language (all when ``language`` is empty)."""
    return [(label, vid) for lang, vid, label in voice_list(engine, models_dir) if not language or lang == language]


def language_of(engine: str, voice: str, models_dir: str | Path | None = None) -> str:
    voice = voice or default_voice(engine)
    return next((lang for lang, vid, _ in voice_list(engine, models_dir) if vid == voice), "")


def read_text_file(path: Path) -> str:
    """The text of a UTF-8 file, or one line naming the file and the problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SpeechError(f"{path}: cannot read the text file ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpeechError(f"{path}: the text file is not UTF-8") from None


def text_of(opts: Any) -> str:
    """The text a ``SpeechOptions`` asks for: its text, else its text file's; '' for none."""
    text = opts.text or ""
    if opts.text_file is not None:
        if text.strip():
            raise SpeechError("give the text or a text file, not both")
        text = read_text_file(opts.text_file)
    return text if text.strip() else ""


def synthesize(text: str, engine: str = "espeak", voice: str = "", speed: float = 1.0, pause: float = 0.3,
               models_dir: str | Path | None = None, allow_download: bool = True,
               progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, int]:
    """(int16 mono samples, rate): every sentence of ``text`` spoken, ``pause`` seconds between them."""
    sentences = split_sentences(text)
    if not sentences:
        raise SpeechError("there is no text to speak")
    if len(text) > MAX_TEXT_CHARS:
        raise SpeechError(f"the text has {len(text)} characters; at most {MAX_TEXT_CHARS} are spoken in one run")
    if engine == "espeak":
        def speak_one(sentence: str) -> tuple[np.ndarray, int]:
            return espeak.synthesize(sentence, voice or espeak.DEFAULT_VOICE, speed)
    elif engine == "piper":
        model, config = piper.voice_files(voice, models_dir, allow_download, progress)
        loaded = piper.load_voice(model, config)

        def speak_one(sentence: str) -> tuple[np.ndarray, int]:
            return piper.synthesize(sentence, loaded, speed)
    else:
        raise SpeechError(f"unknown voice engine {engine!r} (choose from {', '.join(ENGINES)})")
    pieces: list[np.ndarray] = []
    rate = 0
    for i, sentence in enumerate(sentences):
        samples, rate = speak_one(sentence)
        if i:
            pieces.append(np.zeros(round(pause * rate), np.int16))
        pieces.append(samples)
    audio = np.concatenate(pieces)
    if not audio.size or not np.any(audio):
        raise SpeechError(f"the {engine} voice {voice or default_voice(engine)!r} produced no sound for this text")
    return audio, rate


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """A 16-bit mono PCM WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(np.asarray(samples, "<i2").tobytes())
    return buf.getvalue()


def cache_key(text: str, engine: str, voice: str, speed: float, pause: float) -> str:
    """What changes the sound, hashed: the name of the cached WAV."""
    voice = voice or default_voice(engine)
    blob = json.dumps([FORMAT_VERSION, text, engine, voice, round(float(speed), 4), round(float(pause), 4)])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def speak(text: str, *, engine: str = "espeak", voice: str = "", speed: float = 1.0, pause: float = 0.3,
          cache_dir: str | Path | None = None, models_dir: str | Path | None = None, allow_download: bool = True,
          progress: Callable[[int, int], None] | None = None) -> Path:
    """The WAV of ``text`` in ``<cache>/speech`` (made once; the same settings reuse it)."""
    from ..cache import default_cache_dir

    path = Path(cache_dir or default_cache_dir()) / "speech" / f"{cache_key(text, engine, voice, speed, pause)}.wav"
    if path.is_file() and path.stat().st_size > 44:
        return path
    samples, rate = synthesize(text, engine, voice, speed, pause, models_dir, allow_download, progress)
    write_atomic(path, wav_bytes(samples, rate), parents=True)
    log.info("spoke %d characters with %s (%s): %.1f s of audio in %s", len(text), engine,
             voice or default_voice(engine), samples.size / rate, path)
    return path


def options_from_values(values: Mapping[str, Any]):
    """A ``SpeechOptions`` from flat option values (UI, API, CLI), validated by the option schema."""
    from ..config import SpeechOptions
    from ..options import field_values

    fields = field_values({k: v for k, v in values.items() if k in SPEECH_KEYS})
    return SpeechOptions(**{path[-1]: value for path, value in fields.items() if path[0] == "speech"})


def speak_options(opts: Any, *, cache_dir: str | Path | None = None, models_dir: str | Path | None = None,
                  allow_download: bool = True, progress: Callable[[int, int], None] | None = None) -> Path | None:
    """The WAV for a ``SpeechOptions``, or None when it has no text."""
    text = text_of(opts)
    if not text:
        return None
    return speak(text, engine=opts.engine, voice=opts.voice, speed=opts.speed, pause=opts.pause,
                 cache_dir=cache_dir, models_dir=models_dir, allow_download=allow_download, progress=progress)


def audio_path_beside(output: str | Path) -> Path:
    """Where the spoken audio of a result is saved: ``<result stem>.wav`` beside it."""
    return Path(output).with_suffix(".wav")


def save_beside(audio: str | Path, output: str | Path) -> Path:
    """Copy the spoken audio next to the result, atomically."""
    return write_atomic(audio_path_beside(output), Path(audio).read_bytes())


SPEECH_KEYS = ("text", "text_file", "tts_engine", "voice", "tts_speed", "tts_pause")  # option keys

__all__ = ["ENGINES", "SPEECH_KEYS", "SpeechError", "audio_path_beside", "default_voice", "languages",
           "options_from_values", "save_beside", "speak", "speak_options", "split_sentences", "synthesize",
           "text_of", "voice_list", "voices_for", "wav_bytes"]
