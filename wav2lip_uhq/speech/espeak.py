"""The offline default voice: eSpeak NG through the library and voice data that the
``espeakng-loader`` wheel ships (no system package, no download, no torch).

The library keeps one global state, so every call goes through one lock; it is initialised once
per process in synchronous mode and hands us its samples through a callback.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import Wav2LipUHQError

log = logging.getLogger(__name__)

AUDIO_OUTPUT_SYNCHRONOUS = 2
CHARS_UTF8 = 1
POS_CHARACTER = 1
PARAM_RATE = 1
DEFAULT_RATE = 175  # words per minute at speed 1.0 (eSpeak's own default)
RATE_RANGE = (80, 450)
DEFAULT_VOICE = "en-us"

_lock = threading.Lock()
_state: dict = {}


class SpeechError(Wav2LipUHQError):
    """Text cannot be spoken: the engine is missing, the voice unknown, or synthesis failed."""


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class EspeakVoice:
    """One eSpeak voice: ``id`` is what ``--voice`` takes (its first language, e.g. ``en-us``)."""

    id: str
    name: str
    language: str  # the language code the voice list groups by (``en``)
    identifier: str = ""  # eSpeak's voice file (``roa/fr``): what it loads


def available() -> bool:
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        return False
    return True


def _library():
    """The loaded library and its sample rate (initialised on first use)."""
    if "lib" in _state:
        return _state["lib"], _state["rate"]
    try:
        import espeakng_loader
    except ImportError:
        raise SpeechError('the offline voice needs espeakng-loader: pip install "wav2lip-uhq[speech]"') from None
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        raise SpeechError(f"eSpeak NG could not start (data in {espeakng_loader.get_data_path()})")
    chunks: list[np.ndarray] = []

    def collect(wav, count, _events) -> int:
        if wav and count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    callback = _CALLBACK(collect)
    lib.espeak_SetSynthCallback(callback)
    _state.update(lib=lib, rate=rate, chunks=chunks, callback=callback)  # the callback must stay alive
    return lib, rate


def _languages(raw: bytes) -> list[str]:
    """eSpeak's language field: (priority byte, name, NUL) repeated, ended by a zero byte."""
    out, i = [], 0
    while i < len(raw) and raw[i] != 0:
        end = raw.find(b"\0", i + 1)
        end = len(raw) if end < 0 else end
        out.append(raw[i + 1:end].decode("utf-8", "replace"))
        i = end + 1
    return out


def voices() -> list[EspeakVoice]:
    """Every voice the shipped data has, sorted by language then id."""
    if "voices" in _state:
        return _state["voices"]
    with _lock:
        lib, _ = _library()
        listing = lib.espeak_ListVoices(None)
        found = []
        i = 0
        while listing[i]:
            v = listing[i].contents
            langs = _languages(ctypes.string_at(v.languages, 256)) if v.languages else []
            if langs and not (v.identifier or b"").startswith(b"mb/"):  # mbrola voices need extra data
                found.append(EspeakVoice(langs[0], v.name.decode("utf-8", "replace"), langs[0].split("-")[0],
                                         v.identifier.decode("utf-8", "replace")))
            i += 1
    _state["voices"] = sorted(found, key=lambda v: (v.language, v.id))
    return _state["voices"]


def find_voice(voice: str) -> EspeakVoice:
    """The voice for an id (``fr-fr``) or a name (``French (France)``), case-insensitive."""
    wanted = (voice or DEFAULT_VOICE).strip().lower()
    for v in voices():
        if wanted in (v.id.lower(), v.name.lower(), v.identifier.lower()):
            return v
    raise SpeechError(f"unknown eSpeak voice {voice!r}; `wav2lip-uhq voices` lists them")


def rate_for(speed: float) -> int:
    lo, hi = RATE_RANGE
    return int(min(hi, max(lo, round(DEFAULT_RATE * speed))))


def synthesize(text: str, voice: str = DEFAULT_VOICE, speed: float = 1.0) -> tuple[np.ndarray, int]:
    """(int16 mono samples, sample rate) of ``text`` spoken by ``voice``."""
    data = text.encode("utf-8") + b"\0"
    chosen = find_voice(voice)
    with _lock:
        lib, rate = _library()
        if lib.espeak_SetVoiceByName(chosen.identifier.encode()) != 0:
            raise SpeechError(f"eSpeak NG cannot load the voice {chosen.id} ({chosen.identifier})")
        lib.espeak_SetParameter(PARAM_RATE, rate_for(speed), 0)
        chunks = _state["chunks"]
        chunks.clear()
        err = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if err != 0:
            raise SpeechError(f"eSpeak NG failed to speak the text (error {err})")
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        chunks.clear()
    return samples.astype(np.int16, copy=False), rate
