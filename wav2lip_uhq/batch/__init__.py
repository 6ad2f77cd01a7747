"""Batch jobs: many face/audio pairs, resumable, in one process, several, or on a Ray cluster.

- ``manifest``: rows from a CSV/JSONL manifest or a faces folder paired with an audios folder,
  each validated by the option schema before anything runs;
- ``runner``: content keys (a finished row is skipped on the next invocation), one row's
  execution, the serial backend, ``BatchRunner`` (plan, summary, progress);
- ``workers``: ``--workers N`` spawned processes; ``ray_backend``: ``--ray`` actors;
- ``progress``: bars over rows and frames.

Used by ``wav2lip-uhq batch``, the API's ``POST /batch`` and the UI's batch section.
"""

from __future__ import annotations

from .manifest import BatchRow, ManifestError, pair_folders, read_manifest, rows_from_folders
from .runner import BatchRunner, BatchSummary, RowOutcome, SerialBackend, execute_row, finished_key, row_key

__all__ = [
    "BatchRow",
    "BatchRunner",
    "BatchSummary",
    "ManifestError",
    "RowOutcome",
    "SerialBackend",
    "execute_row",
    "finished_key",
    "pair_folders",
    "read_manifest",
    "row_key",
    "rows_from_folders",
]
