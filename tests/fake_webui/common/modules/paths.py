"""``modules/paths.py`` / ``paths_internal.py``: the WebUI's directories (set by ``install``)."""

from __future__ import annotations

import os

from modules import _fake

script_path = _fake.CONFIG["script_path"]  # the WebUI root
data_path = _fake.CONFIG["data_path"]  # --data-dir
models_path = _fake.CONFIG["models_path"]  # <data_path>/models unless --models-dir
extensions_dir = os.path.join(data_path, "extensions")
extensions_builtin_dir = os.path.join(script_path, "extensions-builtin")
config_states_dir = os.path.join(script_path, "config_states")
default_output_dir = os.path.join(data_path, "outputs")
sd_path = script_path
