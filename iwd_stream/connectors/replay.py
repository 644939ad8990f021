"""Replay a CSV/JSONL source file to Kafka as lifecycle events, optionally in compressed time.

Order: Kafka keeps order per key only, so the replay keeps each item's rows exactly in file
order (duplicates and out-of-order rows included) and interleaves items by time. An event is
released at its item's running maximum ``occurred_at``: a row that is older than an earlier
row of the same item goes out right after it, as it did in the source. With ``speed`` the gaps
between release times are slept, divided by ``speed``; with ``None`` nothing is slept.

The whole file is mapped before the first send (to order it): memory grows with the file,
which is fine for event logs of this size (ServiceNow: 4,537 rows).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from iwd_stream.connectors.mapper import RowError, RowMapper
from iwd_stream.connectors.mapping import Mapping, load_mapping
from iwd_stream.connectors.output import ProducerLike, ProgressCallback, Sender, dead_letter
from iwd_stream.connectors.sources import read_rows
from iwd_stream.contracts.models import LifecycleEvent, item_key
from iwd_stream.topics import TopicNames


@dataclass(frozen=True)
class BadRow:
    """A row that went to the dead-letter topic instead of becoming events."""

    line: int
    reason: str
    message: str


@dataclass
class ReplaySummary:
    """What a replay did: rows read, events sent by type, rows dead-lettered."""

    path: str
    source: str
    tenant: str
    rows_read: int = 0
    items: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    first_occurred_at: datetime | None = None
    last_occurred_at: datetime | None = None
    duration_s: float = 0.0

    @property
    def events_produced(self) -> int:
        return sum(self.events_by_type.values())

    def as_dict(self) -> dict[str, object]:
        """Return the summary as JSON-ready data."""
        return {
            "path": self.path,
            "source": self.source,
            "tenant": self.tenant,
            "rows_read": self.rows_read,
            "items": self.items,
            "events_produced": self.events_produced,
            "events_by_type": dict(sorted(self.events_by_type.items())),
            "dead_lettered": self.dead_lettered,
            "bad_rows": [vars(b) for b in self.bad_rows[:20]],
            "first_occurred_at": self.first_occurred_at.isoformat()
            if self.first_occurred_at
            else None,
            "last_occurred_at": self.last_occurred_at.isoformat()
            if self.last_occurred_at
            else None,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass(frozen=True)
class PlannedEvent:
    """A mapped event and when the replay releases it (source time)."""

    release_at: datetime
    seq: int
    line: int
    event: LifecycleEvent


@dataclass
class ReplayPlan:
    """Every event a file yields, in release order, and the rows that could not be mapped."""

    events: list[PlannedEvent]
    bad: list[tuple[BadRow, bytes]]
    rows_read: int
    items: int


def plan_replay(path: Path, mapping: Mapping, tenant: str | None = None) -> ReplayPlan:
    """Map a whole file (no Kafka) and order its events for release; pure apart from reading it."""
    mapper = RowMapper(mapping, tenant)
    released: dict[str, datetime] = {}
    planned: list[PlannedEvent] = []
    bad: list[tuple[BadRow, bytes]] = []
    rows = 0
    for row in read_rows(path, mapping):
        rows += 1
        if row.values is None:
            bad.append((BadRow(row.line, "malformed_row", row.problem or "malformed"), row.raw))
            continue
        try:
            events = mapper.map_row(row.values)
        except RowError as exc:
            bad.append((BadRow(row.line, exc.reason, exc.message), row.raw))
            continue
        for event in events:
            key = event.key
            at = max(released.get(key, event.occurred_at), event.occurred_at)
            released[key] = at
            planned.append(PlannedEvent(at, len(planned), row.line, event))
    # Stable on seq, so each item's events keep file order (their release times never go back).
    planned.sort(key=lambda p: (p.release_at, p.seq))
    return ReplayPlan(planned, bad, rows, mapper.items_seen)


def parse_speed(value: str | float | None) -> float | None:
    """Read ``--speed``: a factor > 0, or None / "max" for as fast as possible."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("max", "")):
        return None
    speed = float(value)
    if not speed > 0:
        raise ValueError(f"speed must be > 0 or 'max', got {value!r}")
    return speed


def replay(
    path: str | Path,
    mapping: Mapping | str | Path,
    producer: ProducerLike,
    topics: TopicNames,
    speed: float | str | None = None,
    progress: ProgressCallback | None = None,
    *,
    tenant: str | None = None,
    on_bad_row: Callable[[BadRow], None] | None = None,
    max_gap_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> ReplaySummary:
    """Replay ``path`` through ``mapping`` to ``topics.events``; flush; return a summary.

    ``mapping`` is a Mapping, a mapping file path or a built-in name. Rows that cannot be
    mapped go to ``topics.deadletter`` (topic = the file path, offset = the line number).
    ``max_gap_s`` cuts quiet stretches longer than that many source seconds (with ``speed``).
    """
    started = monotonic()
    path = Path(path)
    if not isinstance(mapping, Mapping):
        mapping = load_mapping(mapping)
    factor = parse_speed(speed)
    plan = plan_replay(path, mapping, tenant)
    summary = ReplaySummary(str(path), mapping.source, tenant or mapping.tenant)
    summary.rows_read = plan.rows_read
    summary.items = plan.items
    sender = Sender(producer)
    for bad_row, raw in plan.bad:
        record = dead_letter(
            reason=bad_row.reason,
            error=f"line {bad_row.line}: {bad_row.message}",
            original=raw,
            topic=str(path),
            offset=bad_row.line,
            stage=f"connector.replay.{mapping.source}",
        )
        sender.send(topics.deadletter, f"{path}:{bad_row.line}", record)
        summary.dead_lettered += 1
        summary.bad_rows.append(bad_row)
        if on_bad_row:
            on_bad_row(bad_row)
    total = len(plan.events)
    if plan.events:
        summary.first_occurred_at = plan.events[0].release_at
        summary.last_occurred_at = plan.events[-1].release_at
    previous = plan.events[0].release_at if plan.events else None
    source_elapsed = 0.0  # source seconds since the first event, quiet stretches cut
    wall0 = monotonic()
    for done, planned in enumerate(plan.events, start=1):
        if factor is not None and previous is not None:
            gap = (planned.release_at - previous).total_seconds()
            source_elapsed += gap if max_gap_s is None else min(gap, max_gap_s)
            previous = planned.release_at
            _wait_until(wall0 + source_elapsed / factor, producer, sleep, monotonic)
        event = planned.event
        sender.send(topics.events, item_key(event.tenant, event.capture_id), event)
        summary.events_by_type[event.type.value] += 1
        if progress:
            progress(done, total)
    if progress and total == 0:
        progress(0, 0)
    sender.flush()
    summary.duration_s = monotonic() - started
    return summary


def _wait_until(
    due: float,
    producer: ProducerLike,
    sleep: Callable[[float], None],
    monotonic: Callable[[], float],
) -> None:
    # Sleep in short slices and keep serving delivery reports meanwhile.
    while True:
        left = due - monotonic()
        if left <= 0:
            return
        producer.poll(0)
        sleep(min(left, 0.2))
