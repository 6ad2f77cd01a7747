"""``modules/paths_internal.py``: same values as ``modules.paths`` in the fake."""

from modules.paths import (  # noqa: F401
    data_path,
    default_output_dir,
    extensions_builtin_dir,
    extensions_dir,
    models_path,
    script_path,
)
