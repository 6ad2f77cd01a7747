"""``modules/shared_cmd_options.py``: the parsed command line (``shared.cmd_opts`` is this object).

``options.Options`` reads it as the WebUI does: ``--freeze-settings`` (every setting),
``--freeze-settings-in-sections`` / ``--freeze-specific-settings`` (comma lists) and
``--hide-ui-dir-config`` make setting an option fail.
"""

from __future__ import annotations

import argparse
import os

from modules import paths

cmd_opts = argparse.Namespace(
    data_dir=paths.data_path,
    models_dir=None,
    ckpt_dir=None,
    embeddings_dir=os.path.join(paths.data_path, "embeddings"),
    api=False,
    api_auth=None,
    nowebui=False,
    listen=False,
    share=False,
    server_name=None,
    port=None,
    disable_all_extensions=False,
    disable_extra_extensions=False,
    freeze_settings=False,
    freeze_settings_in_sections=None,
    freeze_specific_settings=None,
    hide_ui_dir_config=False,
    skip_install=False,
    lowvram=False,
    medvram=False,
    no_half=False,
    device_id=None,
    ui_debug_mode=False,
    controlnet_dir=None,
)
