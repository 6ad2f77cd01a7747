"""Batch rows: a CSV or JSONL manifest, or a faces folder paired with an audios folder.

Every row is validated by the option schema (``options.config_from_values``, the path the CLI,
the UI and the API use) before anything runs: one line per bad row, naming the file, the line and
the option. Columns are ``face``, ``audio`` or ``text`` (or ``text-file``: spoken, once every row
is valid, into a cached WAV that becomes the row's audio), ``out`` and any ``run`` option by its
long name without the dashes (``mask-feather`` or ``mask_feather``; flat parts such as ``pad_top``
too). Options given to the command (the CLI's flags, the UI's settings) apply to every row; a
row's own column wins.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, Wav2LipUHQError
from ..options import OptionError, config_from_values, part_owner

FACE_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".gif", ".jpg", ".jpeg", ".png", ".webp",
                 ".bmp")
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")
INPUT_COLUMNS = ("face", "audio", "out")
TEXT_KEYS = ("text", "text_file")
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
LIST_KINDS = ("controlnets", "loras", "paths", "speakers", "choice_set")
MAX_PROBLEMS = 20  # lines printed for a bad manifest; the rest are counted


@dataclass
class BatchRow:
    """One face/audio pair with its validated config; ``where`` names it in messages."""

    index: int
    where: str
    config: Any  # RunConfig
    key: str = ""  # the content key, filled in by the runner
    values: dict | None = None  # a text row's option values, until its text is spoken
    default_out: bool = False  # out chosen from the inputs' names (not a column)


class ManifestError(InputError):
    """A manifest (or folder pair) that cannot run: every problem, one line each."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        super().__init__("\n".join(shown + ([f"... and {more} more"] if more else [])))
        self.problems = problems


def option_key(column: str) -> str:
    """A manifest column as an option key: ``mask-feather`` -> ``mask_feather``."""
    return column.strip().lstrip("-").replace("-", "_")


def allowed_column(key: str) -> bool:
    """Options the command line offers (and their flat parts); ``results_dir`` etc. are not."""
    opt = part_owner(key)
    return opt is not None and opt.flag is not None


def text_value(key: str, raw: str) -> Any:
    """A CSV cell as the option takes it: booleans from true/false/yes/no/1/0, lists split on ``;``."""
    opt = part_owner(key)
    kind = opt.kind if opt is not None and opt.key == key else "int"
    if kind == "bool":
        low = raw.strip().lower()
        if low in TRUE or low in FALSE:
            return low in TRUE
        raise OptionError(f"{opt.label}: {raw!r} is not true or false")
    if kind in LIST_KINDS:
        return [part.strip() for part in raw.split(";") if part.strip()]
    return raw


def _records(path: Path) -> Iterable[tuple[int, dict[str, Any], bool]]:
    """(line number, record, values are text) for each row of a CSV or JSONL manifest."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc})") from None
    if suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ManifestError([f"{path}: line {n}: not JSON ({exc})"]) from None
            if not isinstance(record, dict):
                raise ManifestError([f"{path}: line {n}: expected a JSON object"])
            yield n, record, False
    elif suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise ManifestError([f"{path}: the CSV has no header line (face,audio,out,...)"])
        for record in reader:
            if None in record:
                raise ManifestError([f"{path}: line {reader.line_num}: more cells than header columns"])
            if not any((v or "").strip() for v in record.values()):
                continue
            yield reader.line_num, {k.strip(): v for k, v in record.items() if (v or "").strip()}, True
    else:
        raise InputError(f"{path}: a manifest is a .csv or .jsonl file")


def _resolve(base: Path, value: Any) -> Path:
    path = Path(str(value).strip()).expanduser()
    return path if path.is_absolute() else base / path


def default_out(face: Path, audio: Path, out_dir: Path, lossless: bool) -> Path:
    """Where a row without ``out`` goes: the same name on every invocation, so a batch resumes."""
    return out_dir / f"{face.stem}_{audio.stem}{'.mkv' if lossless else '.mp4'}"


def _check_confined(record: Mapping[str, Any]) -> None:
    """Uploads only (the UI): an input is named by its file name, never a path on the server."""
    for column in ("face", "audio", "text_file", "text-file"):
        name = str(record.get(column) or "").strip()
        if name and (Path(name).name != name or name in (".", "..")):
            raise ValueError(f"{column} {name!r}: name one of the uploaded files (no folders)")


def _speakers_in(speakers: tuple, root: Path, confined: bool) -> tuple:
    """Extra speakers' audio read from the manifest's folder like the row's own audio."""
    import dataclasses

    out = []
    for n, s in enumerate(speakers, 2):
        if confined and (s.audio.name != str(s.audio) or s.audio.name in (".", "..")):
            raise ValueError(f"speaker {n} audio {str(s.audio)!r}: name one of the uploaded files (no folders)")
        path = _resolve(root, s.audio)
        if not path.is_file():
            raise ValueError(f"speaker {n}'s audio file not found: {path}")
        out.append(dataclasses.replace(s, audio=path))
    return tuple(out)


def build_row(index: int, where: str, record: Mapping[str, Any], base: Mapping[str, Any], *,
              root: Path, out_dir: Path, text_cells: bool = False, confined: bool = False) -> BatchRow:
    """One validated row; ``ValueError`` with a message naming the column or option. ``confined``:
    inputs must be files directly in ``root`` (and outputs inside ``out_dir``)."""
    if confined:
        _check_confined(record)
    values = dict(base)
    for column, raw in record.items():
        key = option_key(column)
        if key in INPUT_COLUMNS:
            continue
        if not allowed_column(key):
            raise ValueError(f"unknown column {column!r} (a run option by its long name, or face/audio/out)")
        values[key] = text_value(key, raw) if text_cells and isinstance(raw, str) else raw
    if record.get("audio") not in (None, ""):  # a row's audio wins over a text given for every row
        for key in TEXT_KEYS:
            values.pop(key, None)
    spoken = record.get("audio") in (None, "") and any(str(values.get(k) or "").strip() for k in TEXT_KEYS)
    if record.get("audio") not in (None, "") and any(str(record.get(k) or "").strip() for k in TEXT_KEYS):
        raise ValueError("give audio or text, not both")
    for column in ("face",) if spoken else ("face", "audio"):
        if record.get(column) in (None, ""):
            raise ValueError(f"the {column!r} column is empty" + ("" if column == "face" else " (or give text)"))
    if spoken and values.get("text_file"):
        values["text_file"] = str(_resolve(root, values["text_file"]))
    face = _resolve(root, record["face"])
    audio = Path(f"{face.stem}_text.wav") if spoken else _resolve(root, record["audio"])  # spoken later
    for what, path in (("face", face), ("audio", audio)):
        if not path.is_file() and not (spoken and what == "audio"):
            raise ValueError(f"{what} file not found: {path}")
    config = config_from_values(values, face, audio)
    config.speakers = _speakers_in(config.speakers, root, confined)
    out = record.get("out")
    config.out = _resolve(out_dir, out) if out not in (None, "") else default_out(
        face, audio, out_dir, config.encode.lossless)
    from ..video import check_output_path

    check_output_path(config.out, config.encode.lossless)
    if confined and not config.out.resolve().is_relative_to(out_dir.resolve()):
        raise ValueError(f"out {out}: outside the results folder")
    if config.out.resolve() in (face.resolve(), audio.resolve()):
        raise ValueError(f"out {config.out} is one of the row's inputs")
    return BatchRow(index, where, config, values=values if spoken else None, default_out=out in (None, ""))


def speak_row(row: BatchRow) -> None:
    """A text row's text spoken (cached by text and voice) into the WAV that becomes its audio;
    a default output name takes the WAV's content key, so the same text finds its result again."""
    from ..speech import options_from_values, speak_options

    values = row.values or {}
    c = row.config
    wav = speak_options(options_from_values(values), cache_dir=c.cache_dir, models_dir=c.models_dir,
                        allow_download=c.allow_download)
    if wav is None:
        raise ValueError("the text is empty")
    c.audio = Path(wav)
    if row.default_out:
        c.out = Path(c.out).with_name(f"{c.face.stem}_{c.audio.stem[:10]}{Path(c.out).suffix}")
    row.values = None


def _check_unique(rows: list[BatchRow], problems: list[str]) -> None:
    seen: dict[Path, str] = {}
    for row in rows:
        out = Path(row.config.out).resolve()
        if out in seen:
            problems.append(f"{row.where}: out {row.config.out} is also the output of {seen[out]}")
        seen.setdefault(out, row.where)


def _validated(items: Iterable[tuple[str, Mapping[str, Any], bool]], base: Mapping[str, Any], root: Path,
               out_dir: Path, source: str, confined: bool = False) -> list[BatchRow]:
    rows: list[BatchRow] = []
    problems: list[str] = []
    for where, record, text_cells in items:
        try:
            rows.append(build_row(len(rows), where, record, base, root=root, out_dir=out_dir,
                                  text_cells=text_cells, confined=confined))
        except (ValueError, Wav2LipUHQError) as exc:
            problems.append(f"{where}: {exc}")
    if not rows and not problems:
        problems.append(f"{source}: no rows")
    for row in rows if not problems else ():  # spoken only once every row is valid
        if row.values is not None:
            try:
                speak_row(row)
            except (ValueError, Wav2LipUHQError) as exc:
                problems.append(f"{row.where}: {exc}")
    _check_unique(rows, problems)
    if problems:
        raise ManifestError(problems)
    return rows


def read_manifest(path: str | Path, base: Mapping[str, Any] | None = None, out_dir: str | Path = "results",
                  root: str | Path | None = None, confined: bool = False,
                  name: str | None = None) -> list[BatchRow]:
    """The validated rows of a CSV/JSONL manifest; relative face/audio paths are read from the
    manifest's folder (or ``root``), relative ``out`` names from ``out_dir``. ``confined`` (the
    UI): only files directly in ``root`` and outputs inside ``out_dir``; ``name`` in messages."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    label = name or str(path)
    items = ((f"{label}: line {n}", record, text) for n, record, text in _records(path))
    return _validated(items, base or {}, Path(root) if root else path.parent, Path(out_dir), label, confined)


def _number(stem: str) -> str | None:
    m = re.search(r"(\d+)\D*$", stem)
    return str(int(m.group(1))) if m else None


def _media(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes
                  and not p.name.startswith("."))


def pair_folders(faces: str | Path, audios: str | Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(face, audio) pairs by the same name (``a.mp4`` + ``a.wav``), else by the last number in the
    name (``clip_03.mp4`` + ``line3.wav``, Easy-Wav2Lip's convention); an audio *file* goes with
    every face. Returns the pairs and one problem per face without exactly one audio."""
    faces, audios = Path(faces), Path(audios)
    problems = [f"{p}: folder not found" for p in (faces,) if not p.is_dir()]
    if not audios.exists():
        problems.append(f"{audios}: not found")
    if problems:
        return [], problems
    face_files = _media(faces, FACE_SUFFIXES)
    if not face_files:
        return [], [f"{faces}: no face videos or images ({', '.join(FACE_SUFFIXES)})"]
    if audios.is_file():
        return [(f, audios) for f in face_files], []
    same = faces.resolve() == audios.resolve()  # one folder holding both: videos are faces there
    audio_files = _media(audios, AUDIO_SUFFIXES + (() if same else (".mp4", ".mov", ".mkv", ".webm")))
    by_stem = {a.stem: a for a in audio_files}
    pairs: list[tuple[Path, Path]] = []
    for face in face_files:
        if face.stem in by_stem:
            pairs.append((face, by_stem[face.stem]))
            continue
        number = _number(face.stem)
        matches = [a for a in audio_files if number is not None and _number(a.stem) == number]
        if len(matches) == 1:
            pairs.append((face, matches[0]))
        else:
            what = "no audio" if not matches else f"{len(matches)} audios ({', '.join(a.name for a in matches)})"
            problems.append(f"{face}: {what} in {audios} with the same name or number")
    return pairs, problems


def rows_from_folders(faces: str | Path, audios: str | Path, base: Mapping[str, Any] | None = None,
                      out_dir: str | Path = "results") -> list[BatchRow]:
    """The validated rows of ``pair_folders``; outputs are ``<out_dir>/<face>_<audio>.mp4``."""
    pairs, problems = pair_folders(faces, audios)
    if problems:
        raise ManifestError(problems)
    items = ((str(face), {"face": str(face), "audio": str(audio)}, False) for face, audio in pairs)
    return _validated(items, base or {}, Path("."), Path(out_dir), str(faces))


__all__ = ["BatchRow", "ManifestError", "build_row", "default_out", "option_key", "pair_folders",
           "read_manifest", "rows_from_folders", "text_value"]
