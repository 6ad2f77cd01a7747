"""Where a run's result goes, decided and reserved before any work starts.

- no ``out``: a new ``<face>_<audio>[_N].mp4`` in the results folder;
- ``out`` a folder: a new name inside it;
- ``out`` an existing file: refused unless ``overwrite``;
- the container and codecs are checked from the name (``video.check_output_path``).

The name is reserved at once by a marker file created exclusively beside it
(``.<name>.reserved``, holding the owner's pid), so two runs started together never pick the same
name, while nothing appears under the name itself until the finished file is renamed there. A
marker whose process is gone, and the ``.partial`` files such a process left, are cleaned up by
the next run in that folder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError
from .resume import held_by_job
from .video import check_output_path

log = logging.getLogger(__name__)

PARTIAL = re.compile(r"\.(?P<stem>.+)\.[0-9a-f]{8}\.partial(?P<suffix>\.[^.]+)$")  # VideoWriter's temp names


def marker_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.reserved")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _owner(marker: Path) -> int | None:
    try:
        return int(marker.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _stale(marker: Path) -> bool:
    pid = _owner(marker)
    return pid is None or not _alive(pid)


def _try_reserve(path: Path) -> Path | None:
    """The marker for ``path`` if this process could reserve it (None: taken)."""
    marker = marker_for(path)
    for _ in range(2):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _stale(marker):
                return None
            log.info("removing a stale output reservation %s", marker)
            marker.unlink(missing_ok=True)
            continue
        except OSError as exc:
            raise OutputError(f"{path.parent}: output folder is not writable ({exc.strerror or exc})") from None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return marker
    return None


def clean_stale_partials(folder: Path) -> int:
    """Remove ``.<name>.<hex>.partial.<ext>`` files of ours that no live run is writing."""
    removed = 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    for entry in entries:
        m = PARTIAL.match(entry.name)
        if not m or not entry.is_file():
            continue
        marker = marker_for(entry.with_name(m["stem"] + m["suffix"]))
        if marker.exists() and not _stale(marker):
            continue
        entry.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("removed %d stale partial output(s) from %s", removed, folder)
    return removed


def check_output(config, *, for_default: bool = True) -> Path | None:
    """Validate ``config.out`` from its name alone (no file created, no model loaded): the
    explicit output file, or None when the name will be chosen in a folder."""
    out = Path(config.out) if config.out is not None else None
    lossless = config.encode.lossless
    if out is None or out.is_dir():
        check_output_path(Path("x.mkv" if lossless else "x.mp4"), lossless)
        return None
    for src in (config.face, config.audio):
        if Path(src).exists() and out.exists() and out.resolve() == Path(src).resolve():
            raise OutputError(f"{out}: refusing to overwrite an input file")
    check_output_path(out, lossless)
    if out.exists() and not getattr(config, "overwrite", False):
        raise OutputError(f"{out}: already exists; choose another name or pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise OutputError(f"{out.parent}: output folder does not exist")
    return out


def _candidates(config, folder: Path) -> Iterator[Path]:
    suffix = ".mkv" if config.encode.lossless else ".mp4"
    base = f"{Path(config.face).stem}_{Path(config.audio).stem}"
    yield folder / f"{base}{suffix}"
    n = 1
    while True:
        yield folder / f"{base}_{n}{suffix}"
        n += 1


@contextmanager
def reserve_output(config) -> Iterator[Path]:
    """The output path, reserved for the duration of the ``with`` block (see the module doc).

    A results folder this creates is removed again if the run fails and leaves it empty."""
    explicit = check_output(config)
    created: Path | None = None
    if explicit is not None:
        folder, path = explicit.parent, explicit
        clean_stale_partials(folder)
        marker = _try_reserve(path)
        if marker is None:
            raise OutputError(f"{path}: another run is writing this file right now")
    else:
        folder = Path(config.out) if config.out is not None else Path(config.results_dir)
        if not folder.exists():
            try:
                folder.mkdir(parents=True)
            except OSError as exc:
                raise OutputError(f"{folder}: cannot create the results folder ({exc.strerror or exc})") from None
            created = folder
        clean_stale_partials(folder)
        for path in _candidates(config, folder):
            if path.exists() or held_by_job(path, config):  # an interrupted job's name stays its own
                continue
            marker = _try_reserve(path)
            if marker is not None and not path.exists():
                break
            if marker is not None:
                marker.unlink(missing_ok=True)
    ok = False
    try:
        yield path
        ok = True
    finally:
        marker.unlink(missing_ok=True)
        if not ok and created is not None:
            try:
                created.rmdir()  # only when empty
            except OSError:
                pass
