"""Turn source rows into lifecycle events with a :class:`~iwd_stream.connectors.mapping.Mapping`.

The mapper is pure (no Kafka, no clock) and remembers, per item, the latest record version it
has seen, so that it can tell a first row (create) from later ones (update / hold / resume /
complete / cancel / restart). It never drops, re-orders or repairs rows: a duplicate or stale
row is emitted faithfully, with its own version and a deterministic ``event_id``, and the
engine recognises it downstream.

Worked example (ServiceNow mapping, states New/Active = open, Awaiting ... = hold,
Resolved/Closed = complete)::

    line 2  INC1 New      v0 Group 1 -> create          id servicenow:INC1:0:New
    line 3  INC1 Awaiting v1 Group 2 -> update(group), hold
                                        ids servicenow:INC1:1:Awaiting User Info (+ ":hold")
    line 4  INC1 Active   v2 Group 2 -> resume          id servicenow:INC1:2:Active
    line 5  INC1 Active   v2 Group 2 -> update()        id servicenow:INC1:2:Active  (duplicate)
    line 6  INC1 Closed   v3         -> complete        id servicenow:INC1:3:Closed
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from iwd_stream.connectors.mapping import Mapping, Phase
from iwd_stream.contracts.codec import describe_validation_error
from iwd_stream.contracts.models import EventType, LifecycleEvent, WorkItemFields
from iwd_stream.errors import IwdError


class RowError(IwdError):
    """A source row cannot be mapped; it goes to the dead-letter topic and the replay goes on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class _Seen:
    """The latest record version of one item: the base that later rows are compared with."""

    version: int | None
    phase: Phase | None
    tracked: dict[str, object]


_TRANSITIONS: dict[tuple[Phase, Phase], tuple[EventType, ...]] = {
    (Phase.OPEN, Phase.HOLD): (EventType.HOLD,),
    (Phase.HOLD, Phase.OPEN): (EventType.RESUME,),
    (Phase.OPEN, Phase.COMPLETE): (EventType.COMPLETE,),
    (Phase.HOLD, Phase.COMPLETE): (EventType.COMPLETE,),
    (Phase.OPEN, Phase.CANCEL): (EventType.CANCEL,),
    (Phase.HOLD, Phase.CANCEL): (EventType.CANCEL,),
    # A resolved incident that is worked again (ServiceNow "reopen") re-enters as new.
    (Phase.COMPLETE, Phase.OPEN): (EventType.RESTART,),
    (Phase.CANCEL, Phase.OPEN): (EventType.RESTART,),
    (Phase.COMPLETE, Phase.HOLD): (EventType.RESTART, EventType.HOLD),
    (Phase.CANCEL, Phase.HOLD): (EventType.RESTART, EventType.HOLD),
    (Phase.COMPLETE, Phase.CANCEL): (EventType.CANCEL,),
    (Phase.CANCEL, Phase.COMPLETE): (EventType.COMPLETE,),
}
_FIRST: dict[Phase, tuple[EventType, ...]] = {
    Phase.OPEN: (),
    Phase.HOLD: (EventType.HOLD,),
    Phase.COMPLETE: (EventType.COMPLETE,),
    Phase.CANCEL: (EventType.CANCEL,),
}


_STR_FIELDS = {
    "category",
    "department",
    "process",
    "queue",
    "media_type",
    "channel",
    "customer_segment",
}


def _attr(value: object) -> object:
    # Attributes are JSON scalars on the wire; timestamps travel as ISO-8601 text.
    return value.isoformat() if isinstance(value, datetime) else value


class RowMapper:
    """Map rows of one source to lifecycle events, remembering each item's latest version."""

    def __init__(self, mapping: Mapping, tenant: str | None = None) -> None:
        self.mapping = mapping
        self.tenant = tenant or mapping.tenant
        self._seen: dict[str, _Seen] = {}
        self._template_has_type = "{type}" in mapping.event_id
        # Columns whose changes make an update, and the fields/attributes each one feeds.
        self._feeds: dict[str, list[tuple[str, str]]] = {}
        for fname, col in mapping.fields.items():
            self._feeds.setdefault(col, []).append(("field", fname))
        for attr, col in mapping.attributes.items():
            self._feeds.setdefault(col, []).append(("attr", attr))
        self._tracked = tuple(mapping.lifecycle.update_on) or tuple(self._feeds)

    @property
    def items_seen(self) -> int:
        return len(self._seen)

    def _value(self, values: dict[str, Any], column: str) -> object | None:
        raw = values.get(column)
        if raw is None or (isinstance(raw, str) and raw.strip() in self.mapping.missing):
            return None
        try:
            return self.mapping.column(column).convert(raw)
        except (ValueError, TypeError) as exc:
            raise RowError("bad_value", f"column {column!r}: {exc}") from None

    def _required(self, values: dict[str, Any], column: str, role: str) -> object:
        value = self._value(values, column)
        if value is None:
            raise RowError("missing_value", f"column {column!r} ({role}) is missing")
        return value

    def map_row(self, values: dict[str, Any]) -> list[LifecycleEvent]:
        """Return the events one row produces (at least one); raise RowError if it cannot map."""
        m = self.mapping
        capture_id = ":".join(str(self._required(values, c, "capture_id")) for c in m.capture_id)
        occurred_at = self._required(values, m.occurred_at, "occurred_at")
        assert isinstance(occurred_at, datetime)
        version: int | None = None
        if m.version:
            raw_version = self._required(values, m.version, "version")
            assert isinstance(raw_version, int)
            version = raw_version
            if version < 0:
                raise RowError(
                    "bad_value", f"column {m.version!r} (version): {version} is negative"
                )
        converted = {col: self._value(values, col) for col in self._feeds}
        tracked = {col: self._value(values, col) for col in self._tracked}
        lc = m.lifecycle
        base = self._seen.get(capture_id)
        phase: Phase | None = None
        if lc.state_column is not None:
            state = str(self._required(values, lc.state_column, "state")).strip()
            if state not in lc.states:
                raise RowError(
                    "unknown_state",
                    f"column {lc.state_column!r}: unknown state {state!r} "
                    f"(the mapping knows: {', '.join(lc.states)})",
                )
            phase = lc.states[state]
            plan = self._plan_from_state(base, phase, tracked)
        else:
            assert lc.event_column is not None
            state = str(self._required(values, lc.event_column, "event")).strip()
            if state not in lc.events:
                raise RowError(
                    "unknown_event",
                    f"column {lc.event_column!r}: unknown event {state!r} "
                    f"(the mapping knows: {', '.join(lc.events)})",
                )
            etype = lc.events[state]
            all_cols = [c for c in self._feeds if converted[c] is not None]
            plan = [(etype, all_cols if etype in (EventType.CREATE, EventType.UPDATE) else [])]
        if base is None or version is None or base.version is None or version >= base.version:
            # Later rows are compared with the newest version, as the engine will hold it.
            self._seen[capture_id] = _Seen(version, phase, tracked)
        events = []
        for i, (etype, cols) in enumerate(plan):
            at = occurred_at
            if etype in lc.event_time:
                alt = self._value(values, lc.event_time[etype])
                if isinstance(alt, datetime):
                    at = alt
            create = etype is EventType.CREATE
            fields = self._fields(
                cols, converted if create else tracked | converted, skip_missing=create
            )
            events.append(self._event(etype, i, capture_id, state, version, at, fields))
        return events

    def _plan_from_state(
        self, base: _Seen | None, phase: Phase, tracked: dict[str, object]
    ) -> list[tuple[EventType, list[str]]]:
        if base is None:
            return [(EventType.CREATE, list(self._feeds))] + [(e, []) for e in _FIRST[phase]]
        changed = [c for c in self._tracked if tracked[c] != base.tracked.get(c)]
        transition = _TRANSITIONS.get((base.phase, phase), ()) if base.phase else ()
        plan: list[tuple[EventType, list[str]]] = []
        if EventType.RESTART in transition:
            plan.append((EventType.RESTART, []))
        # An update always comes first when nothing else happens, so every row is visible
        # downstream (a duplicate or stale row is counted there, not silently skipped here).
        if changed or not transition:
            plan.append((EventType.UPDATE, changed))
        plan.extend((e, []) for e in transition if e is not EventType.RESTART)
        return plan

    def _fields(
        self, cols: list[str], values: dict[str, object], *, skip_missing: bool = False
    ) -> WorkItemFields:
        out: dict[str, Any] = {}
        attrs: dict[str, object] = {}
        for col in cols:
            value = values.get(col)
            if value is None and skip_missing:
                continue
            for kind, name in self._feeds.get(col, ()):
                if kind == "attr":
                    attrs[name] = _attr(value)
                elif name == "skills" and isinstance(value, str):
                    out[name] = [s.strip() for s in value.split(",") if s.strip()]
                elif name in _STR_FIELDS and value is not None and not isinstance(value, str):
                    out[name] = str(value)  # e.g. a numeric JSON id used as a department
                else:
                    out[name] = value
        if attrs:
            out["attributes"] = attrs
        try:
            return WorkItemFields(**out)
        except ValidationError as exc:
            raise RowError("invalid", describe_validation_error(exc)) from None

    def _event(
        self,
        etype: EventType,
        index: int,
        capture_id: str,
        state: str,
        version: int | None,
        at: datetime,
        fields: WorkItemFields,
    ) -> LifecycleEvent:
        event_id = self.mapping.event_id.format(
            source=self.mapping.source,
            tenant=self.tenant,
            capture_id=capture_id,
            version="" if version is None else version,
            state=state,
            type=etype.value,
            occurred_at=at.isoformat(),
        )
        if index and not self._template_has_type:
            event_id = f"{event_id}:{etype.value}"
        try:
            return LifecycleEvent(
                type=etype,
                event_id=event_id,
                tenant=self.tenant,
                capture_id=capture_id,
                source=self.mapping.source,
                occurred_at=at,
                version=version,
                fields=fields,
            )
        except ValidationError as exc:
            raise RowError("invalid", describe_validation_error(exc)) from None
