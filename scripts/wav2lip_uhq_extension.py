"""WebUI entry of the wav2lip-uhq extension: registers the tab, settings and API routes.

The WebUI runs this file at start with the extension folder as ``sys.path[0]``; all logic lives in
the ``wav2lip_uhq`` package (``wav2lip_uhq/webui.py``).
"""

from wav2lip_uhq import webui

webui.register()
