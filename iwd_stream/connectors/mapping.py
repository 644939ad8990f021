"""Mapping files: how the columns and states of a source become work-item fields and events.

A mapping is data (YAML), not code: a new CSV/JSONL/Kafka-JSON source needs only a new file.
See ``mappings/servicenow.yaml`` for a commented example. :func:`load_mapping` validates the
document and raises :class:`~iwd_stream.errors.ConfigError` naming the file, the path inside
it and the problem; :meth:`Mapping.check_columns` checks it against a file's header.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import yaml

from iwd_stream.contracts.models import EventType, WorkItemFields
from iwd_stream.errors import ConfigError

MAPPING_VERSION = 1
BUILTIN_MAPPINGS = ("servicenow", "nyc311")


class Phase(StrEnum):
    """What a source state means for the item; events come from changes of phase."""

    OPEN = "open"
    HOLD = "hold"
    COMPLETE = "complete"
    CANCEL = "cancel"


class ColumnType(StrEnum):
    STR = "str"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DATETIME = "datetime"


# Which conversions a WorkItemFields field accepts (everything else there is a string).
_DATETIME_FIELDS = {"created_at", "activate_at", "due_at", "expire_at"}
_INT_FIELDS = {"priority", "business_value"}
_LIST_FIELDS = {"skills"}
_MAPPABLE_FIELDS = set(WorkItemFields.model_fields) - {"attributes"}
_EVENT_ID_PLACEHOLDERS = {
    "source",
    "tenant",
    "capture_id",
    "version",
    "state",
    "type",
    "occurred_at",
}
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass(frozen=True)
class Column:
    """How to convert one source column's text into a typed value."""

    name: str
    type: ColumnType = ColumnType.STR
    datetime_format: str | None = None  # None: ISO-8601
    timezone: tzinfo | None = None  # applied to naive timestamps

    def convert(self, raw: object) -> object:
        """Convert a non-missing raw value; raise ValueError saying what was expected."""
        if self.type is ColumnType.STR:
            # JSON sources: scalars stay what they are (an attribute may be a bool or a number).
            if isinstance(raw, str | bool | int | float):
                return raw
            return orjson.dumps(raw).decode()
        if self.type is ColumnType.INT:
            if isinstance(raw, bool):
                raise ValueError(f"expected an integer, got {raw!r}")
            if isinstance(raw, int):
                return raw
            return int(str(raw).strip())
        if self.type is ColumnType.FLOAT:
            return float(raw) if isinstance(raw, int | float) else float(str(raw).strip())
        if self.type is ColumnType.BOOL:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(f"expected a boolean (TRUE/FALSE), got {raw!r}")
        return self._datetime(raw)

    def _datetime(self, raw: object) -> datetime:
        text = str(raw).strip()
        try:
            if self.datetime_format is None:
                value = datetime.fromisoformat(text.replace("Z", "+00:00"))
            else:
                value = datetime.strptime(text, self.datetime_format)
        except ValueError:
            expected = self.datetime_format or "ISO-8601"
            raise ValueError(f"expected a timestamp like {expected}, got {raw!r}") from None
        if value.tzinfo is None:
            if self.timezone is None:
                raise ValueError(f"timestamp {raw!r} has no time zone and the mapping gives none")
            value = value.replace(tzinfo=self.timezone)
        return value


@dataclass(frozen=True)
class Lifecycle:
    """How rows become lifecycle events: from a state column, or from an explicit event column."""

    state_column: str | None = None
    states: dict[str, Phase] = field(default_factory=dict)
    event_column: str | None = None
    events: dict[str, EventType] = field(default_factory=dict)
    update_on: tuple[str, ...] = ()
    event_time: dict[EventType, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mapping:
    """A validated mapping document (build it with :func:`load_mapping`)."""

    name: str  # the file it came from, for messages
    source: str
    tenant: str
    format: str  # csv | jsonl
    capture_id: tuple[str, ...]
    occurred_at: str
    version: str | None
    missing: frozenset[str]
    columns: dict[str, Column]
    fields: dict[str, str]  # WorkItemFields field -> column
    attributes: dict[str, str]  # attribute name -> column
    lifecycle: Lifecycle
    event_id: str
    csv_delimiter: str = ","
    encoding: str = "utf-8"

    def column(self, name: str) -> Column:
        """Return how to convert ``name`` (a plain string column unless the mapping says otherwise)."""
        return self.columns.get(name) or Column(name)

    def referenced_columns(self) -> dict[str, str]:
        """Return every source column the mapping reads, with where it is named."""
        refs: dict[str, str] = {}
        for i, col in enumerate(self.capture_id):
            refs.setdefault(col, f"capture_id[{i}]" if len(self.capture_id) > 1 else "capture_id")
        refs.setdefault(self.occurred_at, "occurred_at")
        if self.version:
            refs.setdefault(self.version, "version")
        for name in self.columns:
            refs.setdefault(name, f"columns.{name}")
        for fname, col in self.fields.items():
            refs.setdefault(col, f"fields.{fname}")
        for attr, col in self.attributes.items():
            refs.setdefault(col, f"attributes.{attr}")
        lc = self.lifecycle
        if lc.state_column:
            refs.setdefault(lc.state_column, "lifecycle.state")
        if lc.event_column:
            refs.setdefault(lc.event_column, "lifecycle.event")
        for col in lc.update_on:
            refs.setdefault(col, "lifecycle.update_on")
        for etype, col in lc.event_time.items():
            refs.setdefault(col, f"lifecycle.event_time.{etype.value}")
        return refs

    def check_columns(self, header: list[str], where: str) -> None:
        """Raise ConfigError if the mapping names a column that ``header`` (of ``where``) lacks."""
        present = set(header)
        unknown = {c: at for c, at in self.referenced_columns().items() if c not in present}
        if unknown:
            detail = "; ".join(f"{at}: column {c!r}" for c, at in sorted(unknown.items()))
            raise ConfigError(
                f"mapping {self.name}: {len(unknown)} column(s) not in the header of {where}: "
                f"{detail} (the file has: {', '.join(header)})"
            )


class _Problem(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _expect(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], path: str = "") -> Any:
    where = f"{path}{key}"
    if key not in doc:
        raise _Problem(where, "is required")
    value = doc[key]
    if not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _Problem(where, f"must be a {want}, got {type(value).__name__} {value!r}")
    return value


def _opt(
    doc: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, path: str = ""
) -> Any:
    if doc.get(key) is None:
        return default
    return _expect(doc, key, kind, path)


def _zone(name: object, path: str) -> tzinfo:
    if not isinstance(name, str):
        raise _Problem(path, f"must be a time zone name such as UTC or Europe/Rome, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Problem(path, f"unknown time zone {name!r}") from None


def _choice(value: object, enum: type[StrEnum], path: str) -> Any:
    try:
        return enum(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise _Problem(path, f"unknown value {value!r} (expected one of: {allowed})") from None


def _columns(doc: dict[str, Any]) -> dict[str, Column]:
    dt_default = _opt(doc, "datetime", dict, {})
    default_fmt = _opt(dt_default, "format", str, None, "datetime.")
    default_tz = (
        _zone(dt_default["timezone"], "datetime.timezone") if "timezone" in dt_default else None
    )
    unknown = set(dt_default) - {"format", "timezone"}
    if unknown:
        raise _Problem(f"datetime.{sorted(unknown)[0]}", "unknown key (expected format, timezone)")
    out: dict[str, Column] = {}
    for name, spec in (_opt(doc, "columns", dict, {})).items():
        path = f"columns.{name}"
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict):
            raise _Problem(path, f"must be a type name or a mapping, got {spec!r}")
        extra = set(spec) - {"type", "format", "timezone"}
        if extra:
            raise _Problem(
                f"{path}.{sorted(extra)[0]}", "unknown key (expected type, format, timezone)"
            )
        ctype = _choice(spec.get("type", "str"), ColumnType, f"{path}.type")
        fmt = spec.get("format", default_fmt)
        tz = _zone(spec["timezone"], f"{path}.timezone") if "timezone" in spec else default_tz
        if ctype is not ColumnType.DATETIME and ("format" in spec or "timezone" in spec):
            raise _Problem(path, "format/timezone apply only to type: datetime")
        if ctype is ColumnType.DATETIME and fmt is not None:
            try:
                datetime.strptime(datetime(2016, 2, 29, 1, 2, 3).strftime(fmt), fmt)
            except ValueError as exc:
                raise _Problem(f"{path}.format", f"not a usable strptime format: {exc}") from None
        out[str(name)] = Column(str(name), ctype, fmt, tz)
    return out


def _lifecycle(doc: dict[str, Any], columns: dict[str, Column]) -> Lifecycle:
    lc = _expect(doc, "lifecycle", dict)
    allowed = {"state", "states", "event", "events", "update_on", "event_time"}
    extra = set(lc) - allowed
    if extra:
        raise _Problem(
            f"lifecycle.{sorted(extra)[0]}",
            f"unknown key (expected one of: {', '.join(sorted(allowed))})",
        )
    state_col = _opt(lc, "state", str, None, "lifecycle.")
    event_col = _opt(lc, "event", str, None, "lifecycle.")
    if (state_col is None) == (event_col is None):
        raise _Problem(
            "lifecycle", "give exactly one of 'state' (a state column) or 'event' (an event column)"
        )
    states: dict[str, Phase] = {}
    events: dict[str, EventType] = {}
    if state_col is not None:
        for state, phase in _expect(lc, "states", dict, "lifecycle.").items():
            states[str(state)] = _choice(phase, Phase, f"lifecycle.states.{state}")
        if not states:
            raise _Problem("lifecycle.states", "lists no state")
    else:
        for value, etype in _expect(lc, "events", dict, "lifecycle.").items():
            et = _choice(etype, EventType, f"lifecycle.events.{value}")
            if et.value not in {
                "create",
                "update",
                "complete",
                "cancel",
                "hold",
                "resume",
                "restart",
            }:
                raise _Problem(
                    f"lifecycle.events.{value}",
                    f"{et.value!r} is internal to the engine; a source cannot send it",
                )
            events[str(value)] = et
    update_on = _opt(lc, "update_on", list, [], "lifecycle.")
    for i, col in enumerate(update_on):
        if not isinstance(col, str):
            raise _Problem(f"lifecycle.update_on[{i}]", f"must be a column name, got {col!r}")
    event_time: dict[EventType, str] = {}
    for etype, col in _opt(lc, "event_time", dict, {}, "lifecycle.").items():
        et = _choice(etype, EventType, f"lifecycle.event_time.{etype}")
        if not isinstance(col, str):
            raise _Problem(f"lifecycle.event_time.{etype}", f"must be a column name, got {col!r}")
        if columns.get(col, Column(col)).type is not ColumnType.DATETIME:
            raise _Problem(
                f"lifecycle.event_time.{etype}",
                f"column {col!r} must be declared with type: datetime under columns",
            )
        event_time[et] = col
    return Lifecycle(state_col, states, event_col, events, tuple(update_on), event_time)


def _parse(doc: object, name: str) -> Mapping:
    if not isinstance(doc, dict):
        raise _Problem("(document)", "must be a YAML mapping")
    known = {
        "mapping_version",
        "source",
        "tenant",
        "format",
        "csv",
        "missing",
        "capture_id",
        "occurred_at",
        "version",
        "datetime",
        "columns",
        "fields",
        "attributes",
        "lifecycle",
        "event_id",
        "encoding",
        "description",
    }
    extra = set(doc) - known
    if extra:
        raise _Problem(
            sorted(extra)[0], f"unknown key (expected one of: {', '.join(sorted(known))})"
        )
    mv = _opt(doc, "mapping_version", int, MAPPING_VERSION)
    if mv != MAPPING_VERSION:
        raise _Problem(
            "mapping_version", f"this build reads mapping_version {MAPPING_VERSION}, not {mv}"
        )
    source = _expect(doc, "source", str)
    tenant = _opt(doc, "tenant", str, source)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", tenant):
        raise _Problem("tenant", f"{tenant!r} is not a valid tenant name")
    fmt = _opt(doc, "format", str, "csv")
    if fmt not in ("csv", "jsonl"):
        raise _Problem("format", f"unknown format {fmt!r} (expected csv or jsonl)")
    csv_opts = _opt(doc, "csv", dict, {})
    delimiter = _opt(csv_opts, "delimiter", str, ",", "csv.")
    cap = _expect(doc, "capture_id", (str, list))
    capture_id = (cap,) if isinstance(cap, str) else tuple(cap)
    if not capture_id or not all(isinstance(c, str) for c in capture_id):
        raise _Problem("capture_id", "must be a column name or a list of column names")
    missing = _opt(doc, "missing", list, ["", "?"])
    columns = _columns(doc)
    occurred_at = _expect(doc, "occurred_at", str)
    if columns.get(occurred_at, Column(occurred_at)).type is not ColumnType.DATETIME:
        raise _Problem(
            "occurred_at",
            f"column {occurred_at!r} must be declared with type: datetime under columns",
        )
    version = _opt(doc, "version", str, None)
    if version is not None and columns.get(version, Column(version)).type is not ColumnType.INT:
        raise _Problem(
            "version", f"column {version!r} must be declared with type: int under columns"
        )
    fields: dict[str, str] = {}
    for fname, col in _opt(doc, "fields", dict, {}).items():
        path = f"fields.{fname}"
        if fname not in _MAPPABLE_FIELDS:
            raise _Problem(
                path,
                f"unknown work-item field (expected one of: {', '.join(sorted(_MAPPABLE_FIELDS))}; "
                "free key/values go under attributes)",
            )
        if not isinstance(col, str):
            raise _Problem(path, f"must be a column name, got {col!r}")
        ctype = columns.get(col, Column(col)).type
        if fname in _DATETIME_FIELDS and ctype is not ColumnType.DATETIME:
            raise _Problem(
                path, f"{fname} needs a datetime column; declare {col!r} with type: datetime"
            )
        if fname in _INT_FIELDS and ctype is not ColumnType.INT:
            raise _Problem(path, f"{fname} needs an int column; declare {col!r} with type: int")
        if fname not in _DATETIME_FIELDS | _INT_FIELDS and ctype is not ColumnType.STR:
            raise _Problem(
                path, f"{fname} needs a str column, but {col!r} is declared {ctype.value}"
            )
        fields[fname] = col
    raw_attrs = _opt(doc, "attributes", (list, dict), [])
    attributes: dict[str, str] = {}
    if isinstance(raw_attrs, list):
        for i, col in enumerate(raw_attrs):
            if not isinstance(col, str):
                raise _Problem(f"attributes[{i}]", f"must be a column name, got {col!r}")
            attributes[col] = col
    else:
        for attr, col in raw_attrs.items():
            if not isinstance(col, str):
                raise _Problem(f"attributes.{attr}", f"must be a column name, got {col!r}")
            attributes[str(attr)] = col
    lifecycle = _lifecycle(doc, columns)
    mapped = set(fields.values()) | set(attributes.values())
    for i, col in enumerate(lifecycle.update_on):
        if col not in mapped:
            raise _Problem(
                f"lifecycle.update_on[{i}]",
                f"column {col!r} feeds no field or attribute, "
                "so a change of it has nothing to carry; map it under fields or attributes",
            )
    default_id = (
        "{source}:{capture_id}:{version}:{state}" if version else "{source}:{capture_id}:{type}"
    )
    event_id = _opt(doc, "event_id", str, default_id)
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(event_id) if f is not None}
    except ValueError as exc:
        raise _Problem("event_id", f"not a valid template: {exc}") from None
    bad = names - _EVENT_ID_PLACEHOLDERS
    if bad:
        raise _Problem(
            "event_id",
            f"unknown placeholder {{{sorted(bad)[0]}}} "
            f"(expected: {', '.join(sorted(_EVENT_ID_PLACEHOLDERS))})",
        )
    if "capture_id" not in names:
        raise _Problem(
            "event_id", "must contain {capture_id} so ids of different items never collide"
        )
    return Mapping(
        name=name,
        source=source,
        tenant=tenant,
        format=fmt,
        capture_id=capture_id,
        occurred_at=occurred_at,
        version=version,
        missing=frozenset(str(m) for m in missing),
        columns=columns,
        fields=fields,
        attributes=attributes,
        lifecycle=lifecycle,
        event_id=event_id,
        csv_delimiter=delimiter,
        encoding=_opt(doc, "encoding", str, "utf-8"),
    )


def parse_mapping(text: str, name: str = "<mapping>") -> Mapping:
    """Parse mapping YAML text; raise ConfigError naming ``name``, the key path and the problem."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"mapping {name}: not valid YAML: {exc}") from None
    try:
        return _parse(doc, name)
    except _Problem as p:
        raise ConfigError(f"mapping {name}: {p.path}: {p.message}") from None


def load_mapping(path_or_name: str | Path) -> Mapping:
    """Load a mapping from a file path or a built-in name (``servicenow``, ``nyc311``)."""
    if isinstance(path_or_name, str) and path_or_name in BUILTIN_MAPPINGS:
        res = resources.files("iwd_stream.connectors") / "mappings" / f"{path_or_name}.yaml"
        return parse_mapping(res.read_text(encoding="utf-8"), f"{path_or_name}.yaml (built-in)")
    path = Path(path_or_name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"mapping {path}: cannot read: {exc.strerror or exc}") from None
    return parse_mapping(text, str(path))


def builtin_data_file(name: str) -> Path:
    """Return the path of a bundled data file (``servicenow_incident_events.csv``, ...)."""
    return Path(str(resources.files("iwd_stream") / "data" / name))
