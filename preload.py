"""Command-line flags of the wav2lip-uhq WebUI extension.

The WebUI calls ``preload(parser)`` with its global ``argparse`` parser before it parses the command
line; ``--wav2lip-uhq-models-dir`` becomes ``shared.cmd_opts.wav2lip_uhq_models_dir`` and so on. Every
default is safe: ``None`` means "let the extension decide" (the WebUI's ``models/Wav2Lip-UHQ`` folder,
a cache folder under the WebUI's data dir). Read them with ``getattr(cmd_opts, name, default)``, since
preload does not run in every context (tests, some API launches).
"""

from __future__ import annotations

DEVICES = ("auto", "cuda", "cpu", "mps")


def preload(parser) -> None:
    group = parser.add_argument_group("wav2lip-uhq")
    flags = [
        (
            "--wav2lip-uhq-models-dir",
            {
                "type": str,
                "default": None,
                "metavar": "DIR",
                "help": "wav2lip-uhq: folder of the Wav2Lip, S3FD, FAN and restoration checkpoints "
                "(default: models/Wav2Lip-UHQ in the WebUI's models folder)",
            },
        ),
        (
            "--wav2lip-uhq-cache-dir",
            {
                "type": str,
                "default": None,
                "metavar": "DIR",
                "help": "wav2lip-uhq: folder for cached face detections (default: under the WebUI's data dir)",
            },
        ),
        (
            "--wav2lip-uhq-device",
            {
                "type": str,
                "default": "auto",
                "choices": DEVICES,
                "help": "wav2lip-uhq: device to run on (default: auto)",
            },
        ),
    ]
    known = getattr(parser, "_option_string_actions", {})
    for flag, kwargs in flags:
        if flag in known:  # a second copy of the extension (renamed folder): keep the first definition
            continue
        group.add_argument(flag, **kwargs)
