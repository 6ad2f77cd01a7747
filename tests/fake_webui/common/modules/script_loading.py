"""``modules/script_loading.py``: how the WebUI runs an extension's ``scripts/*.py``."""

from __future__ import annotations

import importlib.util
import os


def load_module(path):
    # The module is named after the bare file name ("myext.py") and not put in sys.modules.
    module_spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module
