"""The one gradio UI, shared by the WebUI tab and the standalone app (``wav2lip-uhq app``).

- ``values``: defaults from the option schema and the one mapping of UI/API values to a ``RunConfig``
- ``form``: the sections of the form, one widget per declared option
- ``handlers``: what the buttons do, over a ``UIRunner``
- ``compat``: shims for gradio 3.41 (A1111), 4.40 (Forge) and current gradio
- ``app``: ``build_ui`` (wires the three together) and ``launch`` (the standalone app)

Importing this package loads neither gradio nor torch.
"""

from __future__ import annotations

from ..ui_runner import UIRunner
from .app import build_ui, launch
from .form import PREFIX, element_ids
from .handlers import mode_change
from .values import (
    DEFAULTS,
    FACE_TYPES,
    UI_KEYS,
    UIInputError,
    checkpoint_choices,
    config_from_ui,
    file_path,
    parse_box,
    resolve_checkpoint_choice,
    visibility_for_mode,
)

__all__ = [
    "DEFAULTS",
    "FACE_TYPES",
    "PREFIX",
    "UIInputError",
    "UIRunner",
    "UI_KEYS",
    "build_ui",
    "checkpoint_choices",
    "config_from_ui",
    "element_ids",
    "file_path",
    "launch",
    "mode_change",
    "parse_box",
    "resolve_checkpoint_choice",
    "visibility_for_mode",
]
