"""sd-webui-controlnet ``scripts/external_code.py``: re-exports ``internal_controlnet.external_code``
(imported as ``extensions.<dir>.scripts.external_code`` by other extensions)."""

from internal_controlnet.external_code import *
from internal_controlnet.external_code import find_cn_script, get_api_version  # noqa: F401
