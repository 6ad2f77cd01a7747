"""Every run option declared once: field metadata on the config dataclasses.

A field of ``FaceOptions``, ``FrameOptions``, ``CompositeOptions``, ``RefineOptions``,
``EncodeSettings`` or ``RunConfig`` is declared with ``option(default, help, ...)``: its default is
the dataclass default, its metadata an ``Option`` (group, kind, choices or range, label, which
interfaces show it, whether an HTTP API client may set it). From that one declaration come the
CLI's argument groups (``cli/arguments.py``), the UI's widgets and their defaults
(``ui/form.py``), the API's JSON Schema (``json_schema``), the validation of UI/API/CLI values
(``coerce``, ``config_from_values``) and the dataclasses' own checks (``check_fields``).

Plain dataclasses with metadata rather than pydantic: the library, the CLI and the training code
must import without pydantic, and the WebUIs ship pydantic 1.10 (A1111) or 2.x (Forge) — one
declaration that does not care which is there.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GROUPS = {  # group -> title (CLI argument group, UI section)
    "run": "run",
    "faces": "faces",
    "frames": "frames",
    "compositing": "compositing (improved / enhanced / uhq)",
    "restoration": "restoration (enhanced)",
    "refinement": "refinement (uhq)",
    "speech": "text to speech (instead of --audio)",
    "speakers": "several speakers and time ranges",
    "output": "output",
    "extras": "extra outputs (from the same pass, beside the result)",
    "compute": "compute",
}
KINDS = ("bool", "int", "float", "str", "text", "choice", "path", "ints4", "box", "controlnets", "loras",
         "paths", "range", "ranges", "speakers", "choice_set")  # choice_set: any of the choices, in declared order
_UNSET = object()


class OptionError(ValueError):
    """A value an option does not accept; the message names the option by its label."""


@dataclass(frozen=True)
class Option:
    """What one run option is: everything an interface needs to show, parse and validate it."""

    help: str
    group: str
    key: str = ""  # UI/API key; the CLI flag is --key-with-dashes. Default: the field name
    kind: str = ""  # one of KINDS; default from the default's type
    label: str = ""  # UI label, and the name in error messages. Default: the key in words
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None  # UI slider step (a slider where minimum and maximum are set)
    multiple_of: int | None = None
    null: Any = _UNSET  # where the field may be None: the UI/CLI value that means None (e.g. -1)
    parts: tuple[str, ...] = ()  # ints4: the four flat UI/API keys (pad_top, pad_bottom, ...)
    part_labels: tuple[str, ...] = ()
    cli: str | None = ""  # the flag ("" derives it from the key); None: not on the CLI
    cli_aliases: tuple[str, ...] = ()
    ui: bool = True  # shown in the UI form
    client: bool = True  # an HTTP API client may set it (else: the server's value)
    widget: str = ""  # UI override: radio, dropdown, slider, number, textbox, textarea
    default: Any = None  # filled in from the dataclass field by ``walk``
    path: tuple[str, ...] = ()  # attribute path from RunConfig, filled in by ``walk``

    @property
    def nullable(self) -> bool:
        return self.null is not _UNSET

    @property
    def flag(self) -> str | None:
        if self.cli is None:
            return None
        return self.cli or "--" + self.key.replace("_", "-")

    def value_keys(self) -> tuple[str, ...]:
        """The flat UI/API keys that carry this option."""
        return self.parts or (self.key,)

    def interfaces(self) -> tuple[str, ...]:
        return tuple(n for n, on in (("cli", self.cli is not None), ("ui", self.ui), ("api", self.client)) if on)

    def ui_default(self) -> Any:
        """The default as the UI (and the API's JSON) shows it."""
        return to_plain(self, self.default)


def option(default: Any = None, help: str = "", *, factory: Any = None, **meta: Any) -> Any:
    """A dataclass field declared as a run option (see ``Option``)."""
    opt = Option(help=help, **meta)
    if factory is not None:
        return field(default_factory=factory, metadata={"option": opt})
    return field(default=default, metadata={"option": opt})


def _infer_kind(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    return "str"


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _complete(opt: Option, f: dataclasses.Field, path: tuple[str, ...]) -> Option:
    default = _field_default(f)
    key = opt.key or f.name
    kind = opt.kind or ("choice" if opt.choices else _infer_kind(default))
    if kind not in KINDS:
        raise TypeError(f"option {key}: unknown kind {kind!r}")
    label = opt.label or key.replace("_", " ")
    return dataclasses.replace(opt, key=key, kind=kind, label=label, default=default, path=path)


def walk(cls: type | None = None, prefix: tuple[str, ...] = ()) -> Iterator[Option]:
    """Every option under ``cls`` (default ``RunConfig``), nested dataclasses included, in order."""
    if cls is None:
        from .config import RunConfig

        cls = RunConfig
    for f in dataclasses.fields(cls):
        opt = f.metadata.get("option")
        if opt is not None:
            yield _complete(opt, f, (*prefix, f.name))
        elif dataclasses.is_dataclass(_field_default(f)):
            yield from walk(type(_field_default(f)), (*prefix, f.name))


@functools.lru_cache(maxsize=None)
def registry() -> dict[str, Option]:
    """All run options by key; keys (and flat part keys) are unique."""
    out: dict[str, Option] = {}
    seen: set[str] = set()
    for opt in walk():
        for k in (opt.key, *opt.parts):
            if k in seen:
                raise TypeError(f"option key {k!r} declared twice")
            seen.add(k)
        out[opt.key] = opt
    return out


def get(key: str) -> Option:
    return registry()[key]


def value_keys(*, ui: bool | None = None, client: bool | None = None) -> list[str]:
    """Flat UI/API keys of the options that match the filters."""
    keys = []
    for opt in registry().values():
        if ui is not None and opt.ui != ui:
            continue
        if client is not None and opt.client != client:
            continue
        keys.extend(opt.value_keys())
    return keys


def part_owner(key: str) -> Option | None:
    """The option that a flat key belongs to (``pad_top`` -> ``pads``)."""
    reg = registry()
    if key in reg:
        return reg[key]
    return next((o for o in reg.values() if key in o.parts), None)


# -- validation --------------------------------------------------------------------------------
def _number(opt: Option, raw: Any, label: str, integer: bool) -> float | int:
    if isinstance(raw, bool) or raw is None:
        raise OptionError(f"{label}: {raw!r} is not a number")
    if isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            raise OptionError(f"{label}: {raw!r} is not a number") from None
    if not isinstance(raw, (int, float)):
        raise OptionError(f"{label}: {raw!r} is not a number")
    if raw != raw or raw in (float("inf"), float("-inf")):
        raise OptionError(f"{label}: {raw!r} is not a finite number")
    if integer:
        if raw != int(raw):
            raise OptionError(f"{label}: {raw!r} is not a whole number")
        raw = int(raw)
    else:
        raw = float(raw)
    return raw


def _check_range(opt: Option, value: float, label: str) -> None:
    lo, hi = opt.minimum, opt.maximum
    null = opt.null if opt.nullable and isinstance(opt.null, (int, float)) else None
    if null is not None and lo is not None and value < lo:
        if value < null:
            raise OptionError(f"{label} must be at least {null:g}")
        raise OptionError(f"{label} must be {null:g} or at least {lo:g} (got {value:g})")
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise OptionError(f"{label} must be between {lo:g} and {hi:g} (got {value:g})")
    if lo is not None and value < lo:
        raise OptionError(f"{label} must be at least {lo:g}")
    if hi is not None and value > hi:
        raise OptionError(f"{label} must be at most {hi:g}")
    if opt.multiple_of and value % opt.multiple_of:
        raise OptionError(f"{label} must be a multiple of {opt.multiple_of}")


def _four_ints(opt: Option, raw: Any, what: str) -> tuple[int, int, int, int]:
    parts = raw.replace(",", " ").split() if isinstance(raw, str) else raw
    if not isinstance(parts, (list, tuple)) or len(parts) != 4:
        raise OptionError(f"{what}: {raw!r} must be four whole numbers: top bottom left right")
    try:
        return tuple(_number(opt, p, what, True) for p in parts)  # type: ignore[return-value]
    except OptionError:
        raise OptionError(f"{what}: {raw!r} must be four whole numbers: top bottom left right") from None


def _frame_range(opt: Option, raw: Any, what: str) -> tuple[int, int]:
    """``START:END`` (or two numbers): frames [START, END), 0 <= START < END."""
    parts = raw.replace(":", " ").replace(",", " ").split() if isinstance(raw, str) else raw
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise OptionError(f"{what}: {raw!r} must be START:END (frames, END not included)")
    try:
        start, end = (_number(opt, p, what, True) for p in parts)
    except OptionError:
        raise OptionError(f"{what}: {raw!r} must be START:END (frames, END not included)") from None
    if not 0 <= start < end:
        raise OptionError(f"{what} {start}:{end}: need 0 <= START < END")
    return start, end


def _choice_set(opt: Option, raw: Any, what: str) -> tuple[str, ...]:
    """``"raw,debug"`` (commas, spaces or ``;``) or a list -> the chosen ones in declared order."""
    items = raw.replace(",", " ").replace(";", " ").split() if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise OptionError(f"{what}: {raw!r} must be a list of: {', '.join(opt.choices)}")
    bad = [i for i in items if i not in opt.choices]
    if bad:
        raise OptionError(f"{what}: {', '.join(map(repr, bad))} not one of {', '.join(opt.choices)}")
    return tuple(c for c in opt.choices if c in items)


def coerce(opt: Option, raw: Any) -> Any:
    """The field value for ``raw`` as a UI, the CLI or a JSON client gives it; ``OptionError`` if
    the option does not accept it. Booleans are validated, never coerced (``"false"`` is refused)."""
    label = opt.label
    if opt.nullable and (raw is None or raw == opt.null or (isinstance(raw, str) and not raw.strip()
                                                           and opt.kind not in ("str", "text"))):
        return None
    kind = opt.kind
    if kind == "bool":
        if not isinstance(raw, bool):
            raise OptionError(f"{label}: {raw!r} is not true or false")
        return raw
    if kind in ("int", "float"):
        value = _number(opt, raw, label, kind == "int")
        if opt.nullable and value == opt.null:  # "-1" from a command line or a text box
            return None
        _check_range(opt, value, label)
        return value
    if kind == "choice":
        if raw not in opt.choices:
            raise OptionError(f"{label}: {raw!r} is not one of {', '.join(opt.choices)}")
        return raw
    if kind in ("str", "text"):
        if kind == "str" and isinstance(raw, Path):  # a checkpoint given as a path
            return raw
        if not isinstance(raw, str):
            raise OptionError(f"{label}: expected text, got {raw!r}")
        return raw
    if kind == "path":
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        from .files import file_path  # gradio's file values too (str, dict, tempfile)

        path = file_path(raw.strip() if isinstance(raw, str) else raw)
        if path is None:
            return None
        return path.expanduser()
    if kind == "paths":
        items = [raw] if isinstance(raw, str) else list(raw or ())
        return tuple(str(coerce(dataclasses.replace(opt, kind="path"), p)) for p in items if str(p).strip())
    if kind == "ints4":
        return _four_ints(opt, raw, label)
    if kind == "box":
        box = _four_ints(opt, raw, label)
        top, bottom, left, right = box
        if not (0 <= top < bottom and 0 <= left < right):
            raise OptionError(f"{label} {box}: need 0 <= top < bottom and 0 <= left < right")
        return box
    if kind == "range":
        return _frame_range(opt, raw, label)
    if kind in ("ranges", "speakers"):
        from .speakers import parse_ranges, parse_speakers

        try:
            return parse_ranges(raw, label) if kind == "ranges" else parse_speakers(raw)
        except ValueError as exc:
            raise OptionError(str(exc)) from None
    if kind == "choice_set":
        return _choice_set(opt, raw, label)
    if kind == "controlnets":
        from .refine.base import ControlSpec

        return tuple(controlnet_from(item) if not isinstance(item, ControlSpec) else item for item in raw or ())
    if kind == "loras":
        return tuple(lora_from(item) for item in raw or ())
    raise TypeError(f"option {opt.key}: kind {kind}")


def to_plain(opt: Option, value: Any) -> Any:
    """A field value as JSON and the UI show it (None as the null value, tuples as lists)."""
    if value is None:
        if opt.nullable and opt.null is not None:
            return opt.null
        return "" if opt.kind in ("path", "box", "str", "text") else None
    if isinstance(value, Path):
        return str(value)
    if opt.kind in ("ranges", "speakers"):
        from .speakers import format_ranges, speaker_plain

        return format_ranges(value) if opt.kind == "ranges" else [speaker_plain(s) for s in value]
    if opt.kind == "controlnets":
        return [dataclasses.asdict(c) for c in value]
    if isinstance(value, tuple):
        return [list(v) if isinstance(v, tuple) else v for v in value]
    return value


def _sub_options(cls: type) -> dict[str, Option]:
    return {o.path[-1]: o for o in walk(cls)}


def controlnet_from(item: Any):
    """A ``ControlSpec`` from ``MODEL[:PRE[:WEIGHT[:START:END]]]`` or a JSON object."""
    from .refine.base import ControlSpec

    subs = _sub_options(ControlSpec)
    if isinstance(item, Mapping):
        unknown = set(item) - set(subs)
        if unknown:
            raise OptionError(f"ControlNet: unknown field(s) {', '.join(sorted(unknown))}")
        values = dict(item)
    elif isinstance(item, str):
        values = _split_controlnet(item)
    else:
        raise OptionError(f"ControlNet: {item!r} is neither MODEL[:PRE[:WEIGHT[:START:END]]] nor an object")
    model = values.get("model")
    if not isinstance(model, str) or not model.strip():
        raise OptionError("ControlNet: a model is required")
    return ControlSpec(**{k: coerce(subs[k], v) if k != "model" else v.strip() for k, v in values.items()})


def _split_controlnet(spec: str) -> dict[str, Any]:
    model, *rest = spec.rsplit(":", 4) if spec.count(":") <= 4 else [spec]
    while rest and not Path(model).exists() and Path(f"{model}:{rest[0]}").exists():  # a ':' in the path
        model = f"{model}:{rest.pop(0)}"
    values: dict[str, Any] = {"model": model}
    if rest:
        values["preprocessor"] = rest[0]
    if len(rest) >= 2:
        values["weight"] = rest[1]
    if len(rest) >= 4:
        values["guidance_start"], values["guidance_end"] = rest[2], rest[3]
    elif len(rest) == 3:
        raise OptionError(f"ControlNet {spec!r}: give both guidance start and end, or neither")
    return values


def lora_from(item: Any) -> tuple[str, float]:
    """``FILE[:WEIGHT]`` (or ``[file, weight]``) -> (path, weight)."""
    if isinstance(item, (list, tuple)) and len(item) == 2:
        path, weight = item
    elif isinstance(item, str):
        head, _, tail = item.rpartition(":")
        path, weight = (head, tail) if head and tail.replace(".", "", 1).lstrip("-").isdigit() else (item, 1.0)
    else:
        raise OptionError(f"LoRA: {item!r} is not FILE[:WEIGHT]")
    try:
        return str(path), float(weight)
    except (TypeError, ValueError):
        raise OptionError(f"LoRA {item!r}: the weight is not a number") from None


def check_fields(obj: Any) -> None:
    """The dataclass's own check: every declared field holds a value its option accepts."""
    for f in dataclasses.fields(obj):
        opt = f.metadata.get("option")
        if opt is None:
            continue
        opt = _complete(opt, f, (f.name,))
        value = getattr(obj, f.name)
        if value is None:
            continue
        if opt.kind == "choice" and value not in opt.choices:
            raise ValueError(f"unknown {opt.label} {value!r} (choose from {', '.join(opt.choices)})")
        if opt.kind == "choice_set":
            try:
                setattr(obj, f.name, _choice_set(opt, value, opt.label))  # normalised: declared order
            except OptionError as exc:
                raise ValueError(str(exc)) from None
        if opt.kind in ("int", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                _check_range(opt, value, opt.label)
            except OptionError as exc:
                raise ValueError(str(exc)) from None


# -- values -> config --------------------------------------------------------------------------
def control_sub_options() -> dict[str, Option]:
    """The options of one ``ControlSpec`` by field name (the UI's and the API's one ControlNet)."""
    from .refine.base import ControlSpec

    return _sub_options(ControlSpec)


def _raw_value(opt: Option, values: Mapping[str, Any]) -> Any:
    if opt.key in values:
        return values[opt.key]
    if opt.kind == "controlnets" and any(p in values for p in opt.parts):
        model = values.get("controlnet")
        if model is None or not str(model).strip():
            return []
        subs = control_sub_options()
        return [{name: values[sub.key] for name, sub in subs.items() if sub.key in values}]
    if opt.parts and any(p in values for p in opt.parts):
        base = list(opt.default)
        return [values.get(p, d) for p, d in zip(opt.parts, base)]
    return _UNSET


def _part_error(opt: Option, raw: Any, exc: OptionError) -> OptionError:
    """For ints4 options given by parts: name the part that is wrong (``top padding``)."""
    if not opt.parts or not isinstance(raw, (list, tuple)) or len(raw) != 4:
        return exc
    for label, part in zip(opt.part_labels or opt.parts, raw):
        try:
            _number(opt, part, label, True)
        except OptionError as sub:
            return sub
    return exc


def field_values(values: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
    """Validated field values by attribute path, for the keys present in ``values``."""
    out: dict[tuple[str, ...], Any] = {}
    for opt in registry().values():
        raw = _raw_value(opt, values)
        if raw is _UNSET:
            continue
        try:
            out[opt.path] = coerce(opt, raw)
        except OptionError as exc:
            raise _part_error(opt, raw, exc) from None
    return out


def unknown_keys(values: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in values if part_owner(k) is None)


def config_from_values(values: Mapping[str, Any], face: Any, audio: Any):
    """A ``RunConfig`` from flat option values (CLI, UI, API, batch rows); missing keys take the
    dataclass defaults. ``ValueError`` (``OptionError``) names the option that is wrong."""
    from .config import RunConfig

    fields = field_values(values)
    nested: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for path, value in fields.items():
        if len(path) == 1:
            top[path[0]] = value
        else:
            nested.setdefault(path[0], {})[path[1]] = value
    for name, kwargs in nested.items():
        cls = type(_field_default(next(f for f in dataclasses.fields(RunConfig) if f.name == name)))
        top[name] = cls(**kwargs)
    return RunConfig(face=face, audio=audio, **top)


def values_from_config(config: Any) -> dict[str, Any]:
    """The flat UI/API values of a config (the inverse of ``config_from_values``)."""
    out: dict[str, Any] = {}
    for opt in registry().values():
        value = config
        for name in opt.path:
            value = getattr(value, name)
        plain = to_plain(opt, value)
        if opt.kind == "controlnets":  # the UI's one ControlNet: the first
            subs = control_sub_options()
            first = value[0] if value else None
            out.update({sub.key: to_plain(sub, getattr(first, name)) if first else sub.ui_default()
                        for name, sub in subs.items()})
        elif opt.parts:
            out.update(zip(opt.parts, plain))
        else:
            out[opt.key] = plain
    return out


# -- JSON Schema -------------------------------------------------------------------------------
def _json_type(opt: Option) -> dict[str, Any]:
    k = opt.kind
    if k == "bool":
        s: dict[str, Any] = {"type": "boolean"}
    elif k in ("int", "float"):
        s = {"type": "integer" if k == "int" else "number"}
        if opt.minimum is not None:
            s["minimum"] = opt.minimum
        if opt.maximum is not None:
            s["maximum"] = opt.maximum
        if opt.multiple_of:
            s["multipleOf"] = opt.multiple_of
        if opt.nullable and isinstance(opt.null, (int, float)):  # e.g. -1: the largest face / off
            return {"anyOf": [s, {"const": opt.null}, {"type": "null"}]}
    elif k == "choice":
        s = {"type": "string", "enum": list(opt.choices)}
    elif k in ("str", "text", "path"):
        s = {"type": "string"}
    elif k in ("ints4", "box"):
        four = {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4}
        s = {"anyOf": [four, {"type": "string"}]}
    elif k == "range":
        two = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2}
        s = {"anyOf": [two, {"type": "string"}]}
    elif k == "controlnets":
        s = {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object"}]}}
    elif k == "ranges":
        one = {"type": "object", "required": ["start"], "additionalProperties": False,
               "properties": {"start": {"type": ["number", "string"]}, "end": {"type": ["number", "string", "null"]},
                              "offset": {"type": ["number", "string"]}}}
        s = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"anyOf": [{"type": "string"}, one]}}]}
    elif k == "speakers":
        media = {"anyOf": [{"type": "string"}, {"type": "object", "required": ["base64", "name"],
                                                "additionalProperties": False,
                                                "properties": {"base64": {"type": "string"}, "name": {"type": "string"}}}]}
        one = {"type": "object", "required": ["audio"], "additionalProperties": False,
               "properties": {"audio": media, "face_index": {"type": "integer", "minimum": -1, "maximum": 64},
                              "ranges": {"type": "string"}}}
        from .speakers import MAX_SPEAKERS

        s = {"type": "array", "items": {"anyOf": [{"type": "string"}, one]}, "maxItems": MAX_SPEAKERS}
    elif k == "choice_set":
        one = "(?:" + "|".join(opt.choices) + ")"
        listed = rf"^[\s,;]*(?:{one}(?:[\s,;]+{one})*)?[\s,;]*$"  # the text form coerce takes
        s = {"anyOf": [{"type": "array", "items": {"enum": list(opt.choices)}, "uniqueItems": True},
                       {"type": "string", "pattern": listed}]}
    else:
        s = {"type": "array", "items": {"type": "string"}}
    if opt.nullable and "type" in s:
        s["type"] = [s["type"], "null"]
    elif opt.nullable:
        s["anyOf"].append({"type": "null"})
    return s


def json_schema(keys: Sequence[str] | None = None) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the flat settings object; ``keys`` limits it (API clients)."""
    props: dict[str, Any] = {}
    for opt in registry().values():
        for i, key in enumerate(opt.value_keys()):
            if keys is not None and key not in keys:
                continue
            if opt.kind == "controlnets":
                sub = next(o for o in control_sub_options().values() if o.key == key)
                s: dict[str, Any] = {**_json_type(sub), "default": sub.ui_default() or ""}
                label = sub.label
            elif opt.parts:
                s = {"type": "integer", "default": list(opt.default)[i]}
                label = (opt.part_labels or opt.parts)[i]
            else:
                s = {**_json_type(opt), "default": opt.ui_default()}
                label = opt.label
            props[key] = {**s, "title": label, "description": opt.help, "x-group": opt.group}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
    }


__all__ = [
    "GROUPS",
    "Option",
    "OptionError",
    "check_fields",
    "coerce",
    "config_from_values",
    "get",
    "json_schema",
    "option",
    "registry",
    "to_plain",
    "value_keys",
    "values_from_config",
    "walk",
]
