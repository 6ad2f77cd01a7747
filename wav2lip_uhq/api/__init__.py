"""HTTP API: ``POST /wav2lip-uhq/v1/run`` plus job status, result and cancel routes.

Used by the WebUI extension (``on_app_started``, also under ``--nowebui``). A request names its
media by server path (only inside the folders the host allows) or carries it as base64; its
``settings`` are the option schema's client keys and go through the UI's own validation, so the
API and the tab accept exactly the same options. Jobs run one at a time, in order, through the
same ``UIRunner`` as the UI (inside the WebUI: under its queue lock).

- ``requests``: parsing and validating one request, the request's JSON Schema
- ``jobs``: the bounded job queue (output names reserved on acceptance)
- ``routes``: the FastAPI routes, access rules (enable flag, HTTP Basic) and body limits
"""

from __future__ import annotations

from .jobs import ApiJob, JobQueue, NameTaken, QueueFull
from .requests import (
    API_PREFIX,
    AUDIO_TYPES,
    ApiError,
    ApiPolicy,
    clean_stale_uploads,
    client_keys,
    host_keys,
    parse_request,
    probe_media,
    resolve_server_path,
    safe_name,
    schema,
)
from .routes import authorized, parse_credentials, register_routes

__all__ = [
    "API_PREFIX",
    "AUDIO_TYPES",
    "ApiError",
    "ApiJob",
    "ApiPolicy",
    "JobQueue",
    "NameTaken",
    "QueueFull",
    "authorized",
    "clean_stale_uploads",
    "client_keys",
    "host_keys",
    "parse_credentials",
    "parse_request",
    "probe_media",
    "register_routes",
    "resolve_server_path",
    "safe_name",
    "schema",
]
