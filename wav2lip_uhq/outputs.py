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

The run's extra outputs (``--extra-outputs``, ``extra_paths``) are named after the result,
``<result stem>.<kind>.<ext>``, and follow the same rules: reserved with it, an existing one
refused unless ``overwrite``, and a default name is only chosen where none of them exists.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError
from .resume import held_by_job
from .video import check_output_path

log = logging.getLogger(__name__)

PARTIAL = re.compile(r"\.(?P<stem>.+)\.[0-9a-f]{8}\.partial(?P<suffix>\.[^.]+)$")  # VideoWriter's temp names
PARTIAL_DIR = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.partial$")  # a PNG sequence being written

# The extra outputs of one run, in the order they are listed: kind -> (name suffix, what it is).
# A suffix of "" keeps the result's container (``talk.raw.mp4``); a folder has no suffix.
EXTRA_OUTPUTS = {
    "raw": ("", "the generator's faces pasted as fast mode does (hard box; no blend, restoration or refinement)"),
    "composited": ("", "the frame after compositing, before face restoration (enhanced) and SD refinement (uhq)"),
    "debug": ("", "result | overlay side by side: mask in red, landmarks in green, generator box in blue"),
    "mask": (".mov", "ProRes 4444 with alpha: the new mouth layer, alpha = the compositing mask"),
    "mask_png": ("/", "the same layer as RGBA PNGs in a folder, one per frame (000000.png, ...)"),
}
EXTRA_KINDS = tuple(EXTRA_OUTPUTS)
_EXTRA_NAME = re.compile(r".+\.(?:" + "|".join(EXTRA_KINDS) + r")(?:\.[^.]+)?$")


def extra_kinds(config) -> tuple[str, ...]:
    """The extra outputs ``config`` asks for, in ``EXTRA_KINDS`` order (``--debug-video PATH``
    asks for ``debug``, written there)."""
    kinds = set(getattr(config, "extra_outputs", ()) or ())
    if config.composite.debug_video is not None:
        kinds.add("debug")
    return tuple(k for k in EXTRA_KINDS if k in kinds)


def extra_paths(config, out: Path) -> dict[str, Path]:
    """Where each extra output of the result ``out`` goes: ``<stem>.<kind>.<ext>`` beside it."""
    out = Path(out)
    paths = {}
    for kind in extra_kinds(config):
        suffix = EXTRA_OUTPUTS[kind][0]
        if kind == "debug" and config.composite.debug_video is not None:
            paths[kind] = Path(config.composite.debug_video)
        elif suffix == "/":
            paths[kind] = out.with_name(f"{out.stem}.{kind}")
        else:
            paths[kind] = out.with_name(f"{out.stem}.{kind}{suffix or out.suffix}")
    return paths


def is_extra_output(path: Path) -> bool:
    """A file named like an extra output (``talk.raw.mp4``): not listed as a result of its own."""
    return bool(_EXTRA_NAME.fullmatch(Path(path).name))


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
        m, d = PARTIAL.match(entry.name), PARTIAL_DIR.match(entry.name)
        if m and entry.is_file():
            target = entry.with_name(m["stem"] + m["suffix"])
        elif d and entry.is_dir():
            target = entry.with_name(d["name"])
        else:
            continue
        marker = marker_for(target)
        if marker.exists() and not _stale(marker):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
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
    debug = config.composite.debug_video
    if debug is not None:
        _check_target(config, Path(debug), lossless)
    if out is None or out.is_dir():
        check_output_path(Path("x.mkv" if lossless else "x.mp4"), lossless)
        return None
    _check_target(config, out, lossless)
    for kind, path in extra_paths(config, out).items():
        if kind != "debug" or debug is None:
            _check_target(config, path, lossless, video=EXTRA_OUTPUTS[kind][0] == "")
    return out


def _check_target(config, out: Path, lossless: bool, video: bool = True) -> None:
    """One file the run will write: not an input, a known container, not there (or ``overwrite``)."""
    for src in (config.face, config.audio):
        if Path(src).exists() and out.exists() and out.resolve() == Path(src).resolve():
            raise OutputError(f"{out}: refusing to overwrite an input file")
    if video:
        check_output_path(out, lossless)
    if out.exists() and not getattr(config, "overwrite", False):
        raise OutputError(f"{out}: already exists; choose another name or pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise OutputError(f"{out.parent}: output folder does not exist")


def _reserve_all(paths: list[Path]) -> list[Path] | None:
    """Markers for every path, or None (and none kept) when one of them is taken."""
    markers: list[Path] = []
    for path in paths:
        marker = _try_reserve(path)
        if marker is None:
            for m in markers:
                m.unlink(missing_ok=True)
            return None
        markers.append(marker)
    return markers


def _candidates(config, folder: Path) -> Iterator[Path]:
    suffix = ".mkv" if config.encode.lossless else ".mp4"
    base = f"{Path(config.face).stem}_{Path(config.audio).stem}"
    yield folder / f"{base}{suffix}"
    n = 1
    while True:
        yield folder / f"{base}_{n}{suffix}"
        n += 1


def _reserve_named(targets: list[Path]) -> list[Path]:
    """Markers for names given by the user: all of them, or OutputError naming the one taken."""
    markers = _reserve_all(targets)
    if markers is None:
        busy = next(t for t in targets if marker_for(t).exists())
        raise OutputError(f"{busy}: another run is writing this file right now")
    return markers


def _reserve_new_name(config, folder: Path) -> tuple[Path, list[Path]]:
    """The first default name in ``folder`` where neither the result nor any of its extra outputs
    exists or is reserved, with its markers (and the marker of a ``--debug-video`` name)."""
    debug = config.composite.debug_video
    fixed = _reserve_named([Path(debug)]) if debug is not None else []
    for path in _candidates(config, folder):
        targets = [path, *(p for k, p in extra_paths(config, path).items() if k != "debug" or debug is None)]
        if any(t.exists() for t in targets) or held_by_job(path, config):  # an interrupted job's name is its own
            continue
        markers = _reserve_all(targets)
        if markers is not None and not any(t.exists() for t in targets):
            return path, markers + fixed
        for m in markers or ():
            m.unlink(missing_ok=True)
    raise AssertionError("unreachable: the candidates never end")


@contextmanager
def reserve_output(config) -> Iterator[Path]:
    """The output path, reserved for the duration of the ``with`` block (see the module doc),
    with its extra outputs' names.

    A results folder this creates is removed again if the run fails and leaves it empty."""
    explicit = check_output(config)
    created: Path | None = None
    if explicit is not None:
        path = explicit
        clean_stale_partials(path.parent)
        markers = _reserve_named([path, *extra_paths(config, path).values()])
    else:
        folder = Path(config.out) if config.out is not None else Path(config.results_dir)
        if not folder.exists():
            try:
                folder.mkdir(parents=True)
            except OSError as exc:
                raise OutputError(f"{folder}: cannot create the results folder ({exc.strerror or exc})") from None
            created = folder
        clean_stale_partials(folder)
        try:
            path, markers = _reserve_new_name(config, folder)
        except OutputError:
            if created is not None:
                created.rmdir()
            raise
    ok = False
    try:
        yield path
        ok = True
    finally:
        for marker in markers:
            marker.unlink(missing_ok=True)
        if not ok and created is not None:
            try:
                created.rmdir()  # only when empty
            except OSError:
                pass
