"""Exceptions with messages meant for the user (CLI prints them without a traceback)."""


class Wav2LipUHQError(Exception):
    """Base class: an error whose message names the file and the problem."""


class InputError(Wav2LipUHQError):
    """An input file is missing, unreadable, or not what it should be."""


class CheckpointError(Wav2LipUHQError):
    """A checkpoint file cannot be loaded as the requested model."""


class NoFaceError(InputError):
    """No face was found in any frame of the input."""


class OutputError(Wav2LipUHQError):
    """The output cannot be written."""


class Cancelled(Wav2LipUHQError):
    """The run was cancelled by the caller."""
