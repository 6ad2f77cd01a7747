"""Built-in always-on scripts (``modules/processing_scripts``), plus a stand-in for the builtin
soft-inpainting extension: each records its calls in ``_fake.script_calls``."""
