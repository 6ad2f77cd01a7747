"""Parsing one API request: media by server path (inside allowed folders) or base64, settings
validated by the option schema (the same rules as the UI and the CLI), and the request's JSON Schema.

Plain Python: FastAPI is imported only by ``routes``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..files import write_atomic
from ..options import json_schema, value_keys
from ..ui import FACE_TYPES, UIInputError, config_from_ui
from ..ui_runner import UIRunner

log = logging.getLogger(__name__)

API_PREFIX = "/wav2lip-uhq/v1"
AUDIO_TYPES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".mov", ".mkv")
REQUEST_KEYS = ("face", "audio", "settings", "output_name", "wait")
# Settings that name model files: a bare file name inside the models folder (or a known name).
MODEL_FILE_KEYS = ("checkpoint", "restorer", "upscaler", "parser", "sd_checkpoint")


def client_keys() -> list[str]:
    """The settings a client may send: the options declared ``client=True``."""
    return value_keys(client=True)


def host_keys() -> list[str]:
    """Settings only the server chooses (where files go, what it runs on, whether it downloads)."""
    return value_keys(client=False)


class ApiError(Exception):
    """A request the server refuses: ``status`` is the HTTP code (4xx), ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ApiPolicy:
    """What the API may touch. Reads only inside ``allowed_dirs`` (plus its own uploads and
    results), writes only inside ``results_dir`` and ``uploads_dir``."""

    results_dir: Path
    uploads_dir: Path
    allowed_dirs: tuple[Path, ...] = ()
    models_dir: Path | None = None
    allow_download: bool = False  # the server's setting; a client cannot change it
    max_upload_bytes: int = 1 << 30
    keep_jobs: int = 200  # finished jobs remembered for status queries
    max_queued: int = 16  # jobs waiting to run; more are answered 429
    max_waiting_clients: int = 4  # "wait": true requests held open at once; more get 202 at once
    wait_timeout_s: float = 3600.0  # a waiting request answers 202 (with the job id) after this

    @property
    def max_request_bytes(self) -> int:
        """A body carrying the face, the audio and every extra speaker's audio as uploads of the
        limit in base64, plus the JSON around them."""
        from ..speakers import MAX_SPEAKERS

        return (2 + MAX_SPEAKERS) * (self.max_upload_bytes * 4 // 3 + 4) + 65536

    def readable_roots(self) -> list[Path]:
        roots = [*self.allowed_dirs, self.uploads_dir, self.results_dir]
        return [Path(os.path.realpath(r)) for r in roots]


def safe_name(name: Any, what: str) -> str:
    """A plain file name: no folders, no leading dot, only letters, digits, ``._-`` and spaces."""
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, f"{what}: a file name is required")
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if base != name.strip() or base in (".", "..") or base.startswith(".") or "\x00" in base:
        raise ApiError(400, f"{what}: {name!r} must be a plain file name, without folders")
    if not re.fullmatch(r"[\w.\- ]{1,120}", base):
        raise ApiError(400, f"{what}: {name!r} has characters that are not allowed in a file name")
    return base


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def resolve_server_path(value: Any, policy: ApiPolicy, what: str, suffixes: tuple[str, ...]) -> Path:
    """A path on the server, accepted only if it resolves (symlinks included) inside an allowed folder."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ApiError(400, f"{what}: expected a server path or {{'base64': ..., 'name': ...}}")
    roots = policy.readable_roots()
    raw = Path(value)
    if not raw.is_absolute():
        if not policy.allowed_dirs:
            raise ApiError(400, f"{what}: a relative path needs an allowed folder on the server")
        raw = Path(policy.allowed_dirs[0]) / raw
    real = Path(os.path.realpath(raw))
    if not _inside(real, roots):
        raise ApiError(403, f"{what}: {value} is outside the folders this server may read")
    if not real.is_file():
        raise ApiError(404, f"{what}: file not found: {value}")
    if real.suffix.lower() not in suffixes:
        raise ApiError(415, f"{what}: {real.name} is not a supported type ({', '.join(suffixes)})")
    return real


def _decode_upload(value: Mapping, policy: ApiPolicy, job_dir: Path, what: str,
                   suffixes: tuple[str, ...]) -> Path:
    unknown = set(value) - {"base64", "name"}
    if unknown:
        raise ApiError(400, f"{what}: unknown field(s) {', '.join(sorted(unknown))}; use 'base64' and 'name'")
    name = safe_name(value.get("name"), f"{what}.name")
    if Path(name).suffix.lower() not in suffixes:
        raise ApiError(415, f"{what}: {name} is not a supported type ({', '.join(suffixes)})")
    data = value.get("base64")
    if not isinstance(data, str) or not data:
        raise ApiError(400, f"{what}.base64: expected a base64 string")
    if data.startswith("data:"):  # a data URL: keep what follows the comma
        data = data.partition(",")[2]
    if len(data) * 3 // 4 > policy.max_upload_bytes:
        raise ApiError(413, f"{what}: larger than the limit of {policy.max_upload_bytes} bytes")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{what}.base64: not valid base64") from None
    if not raw:
        raise ApiError(400, f"{what}: the file is empty")
    job_dir.mkdir(parents=True, exist_ok=True)
    return write_atomic(job_dir / f"{what}_{name}", raw)


def _media(value: Any, policy: ApiPolicy, job_dir: Path, what: str, suffixes: tuple[str, ...]) -> Path:
    if value is None:
        raise ApiError(400, f"{what} is required")
    if isinstance(value, Mapping):
        return _decode_upload(value, policy, job_dir, what, suffixes)
    return resolve_server_path(value, policy, what, suffixes)


def _model_setting(key: str, value: Any) -> Any:
    """Model settings name a file in the models folder (or a released name), never a path."""
    if value is None or value == "":
        return value
    return safe_name(value, f"settings.{key}")


def _audio_or_speech(payload: Mapping, settings: Mapping, values: dict, policy: ApiPolicy, runner: UIRunner,
                     job_dir: Path) -> Path:
    """The request's audio, or ``settings.text`` spoken (text to speech) into a cached WAV."""
    from ..errors import Wav2LipUHQError

    text = settings.get("text")
    if not (isinstance(text, str) and text.strip()):
        return _media(payload.get("audio"), policy, job_dir, "audio", AUDIO_TYPES)
    if payload.get("audio") is not None:
        raise ApiError(400, "give audio or settings.text, not both")
    try:
        return runner.speak(values)  # downloads a voice only where the server allows downloads
    except (ValueError, Wav2LipUHQError) as exc:
        raise ApiError(422, f"settings.text: {exc}") from None


def _speakers(raw: Any, policy: ApiPolicy, job_dir: Path) -> list[dict[str, Any]]:
    """``settings.speakers``: objects whose audio is a server path inside the allowed folders or an
    upload, like the run's own audio."""
    if not isinstance(raw, list):
        raise ApiError(422, "settings.speakers: expected a list of {audio, face_index, ranges} objects")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ApiError(422, f"settings.speakers[{i}]: expected an object {{audio, face_index, ranges}}")
        audio = _media(item.get("audio"), policy, job_dir, f"speakers{i}_audio", AUDIO_TYPES)
        out.append({**item, "audio": str(audio)})
    return out


def parse_request(payload: Any, policy: ApiPolicy, runner: UIRunner, job_id: str,
                  need_sd_checkpoint: bool = True) -> RunConfig:
    """The ``RunConfig`` for one ``/run`` request, or ``ApiError`` (4xx) saying what is wrong."""
    if not isinstance(payload, Mapping):
        raise ApiError(400, "the request body must be a JSON object")
    unknown = set(payload) - set(REQUEST_KEYS)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(REQUEST_KEYS)}")
    if "wait" in payload and not isinstance(payload["wait"], bool):
        raise ApiError(400, f"wait: {payload['wait']!r} is not true or false")
    settings = payload.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ApiError(400, "settings must be a JSON object of UI settings")
    if "face" in settings or "audio" in settings:
        raise ApiError(400, "give face and audio at the top level of the request, not in settings")
    bad = sorted(set(settings) & set(host_keys()))
    if bad:
        raise ApiError(403, f"settings {', '.join(bad)} are chosen by the server, not by a request")
    unknown = sorted(set(settings) - set(client_keys()))
    if unknown:
        raise ApiError(400, f"unknown setting(s) {', '.join(unknown)}; see GET {API_PREFIX}/schema")
    from ..checkpoints import KNOWN_CHECKPOINTS, models_dir

    values: dict[str, Any] = {**settings, **runner.base_values(), "allow_download": policy.allow_download}
    folder = models_dir(policy.models_dir or runner.models_dir)
    for key in MODEL_FILE_KEYS:
        name = _model_setting(key, settings.get(key))
        if name and not (key == "checkpoint" and name in KNOWN_CHECKPOINTS):
            values[key] = str(folder / name)  # never a file outside the models folder
    job_dir = policy.uploads_dir / job_id
    try:
        values["face"] = _media(payload.get("face"), policy, job_dir, "face", tuple(FACE_TYPES))
        values["audio"] = _audio_or_speech(payload, settings, values, policy, runner, job_dir)
        if settings.get("speakers"):
            values["speakers"] = _speakers(settings["speakers"], policy, job_dir)
        if payload.get("output_name") is not None:
            name = safe_name(payload["output_name"], "output_name")
            if not name.lower().endswith(".mp4"):
                name += ".mp4"
            policy.results_dir.mkdir(parents=True, exist_ok=True)
            values["out"] = policy.results_dir / name
            if values["out"].exists():
                raise ApiError(409, f"output_name: {name} already exists in the results folder")
        try:
            config = config_from_ui(values, need_sd_checkpoint=need_sd_checkpoint)
        except UIInputError as exc:
            raise ApiError(422, str(exc)) from None
        if config.out is not None:
            from ..outputs import extra_paths

            taken = [p.name for p in extra_paths(config, config.out).values() if p.exists()]
            if taken:
                raise ApiError(409, f"output_name: {', '.join(taken)} already exist(s) in the results folder")
        return config
    except ApiError:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise


def schema() -> dict[str, Any]:
    """The request format as a JSON Schema (``GET /schema``); ``settings`` are the declared options
    a client may set, with their types, ranges, choices and defaults."""
    media = {
        "anyOf": [
            {"type": "string", "description": "a server path inside a folder the server allows"},
            {"type": "object", "required": ["base64", "name"], "additionalProperties": False,
             "properties": {"base64": {"type": "string"}, "name": {"type": "string"}}},
        ]
    }
    settings = json_schema(client_keys())
    settings.pop("$schema")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "POST /run request",
        "type": "object",
        "required": ["face"],  # and audio, unless settings.text is spoken instead
        "additionalProperties": False,
        "properties": {
            "face": {**media, "description": f"video or image ({', '.join(FACE_TYPES)})"},
            "audio": {**media, "description": f"speech ({', '.join(AUDIO_TYPES)}); or give settings.text "
                                              "to have it spoken (text to speech)"},
            "settings": settings,
            "output_name": {"type": "string", "description": "file name for the result in the results folder"},
            "wait": {"type": "boolean", "default": False, "description": "answer when the job has finished"},
        },
    }




def probe_media(config: RunConfig) -> None:
    """Open the face and the audio before the job is queued: a file that is not media is refused
    now (415) rather than failing in the queue."""
    from ..errors import Wav2LipUHQError
    from ..video import probe, read_audio_track

    try:
        info = probe(config.face)
    except Wav2LipUHQError as exc:
        raise ApiError(415, f"face: {config.face.name} is not a readable video or image ({exc})") from None
    if info.width < 1 or info.height < 1:
        raise ApiError(415, f"face: {config.face.name} has no picture")
    for what, audio in [("audio", config.audio)] + [(f"speakers[{i}].audio", s.audio)
                                                    for i, s in enumerate(config.speakers)]:
        try:
            read_audio_track(audio)
        except Wav2LipUHQError as exc:
            raise ApiError(415, f"{what}: {audio.name} is not readable audio ({exc})") from None
    from ..speakers import check_timing

    try:
        check_timing(config)
    except Wav2LipUHQError as exc:
        raise ApiError(422, str(exc)) from None


JOB_DIR_NAME = re.compile(r"\d{4,}-[0-9a-f]{12}")


def clean_stale_uploads(policy: ApiPolicy) -> int:
    """At start no job is running: upload folders of our naming left by a killed server go."""
    folder = Path(policy.uploads_dir)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if p.is_dir() and JOB_DIR_NAME.fullmatch(p.name)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    if stale:
        log.info("removed %d stale API upload folder(s) from %s", len(stale), folder)
    return len(stale)
