"""Fake AUTOMATIC1111 WebUI 1.10.1 ``modules`` package (tests only; see ``fake_webui.install``)."""
