"""Score, tie-breaks, re-prioritisation (steps, jumps, max), SLA states and next_change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from iwd_stream.contracts.models import QueueEntry, SlaState
from iwd_stream.domain import BusinessCalendar, QueueIndex, Weights, next_change, score

T0 = datetime(2024, 3, 4, 9, tzinfo=UTC)  # Monday
NO_AGE = Weights(age_per_hour=0)


def entry(cid: str = "A", **kw: Any) -> QueueEntry:
    base: dict[str, Any] = {
        "tenant": "t",
        "capture_id": cid,
        "queue": "q",
        "priority": 50,
        "created_at": T0,
        "enqueued_at": T0,
    }
    base.update(kw)
    return QueueEntry(**base)


def order(entries: list[QueueEntry], now: datetime = T0, weights: Weights = NO_AGE) -> list[str]:
    q = QueueIndex(weights=weights)
    for e in entries:
        q.upsert(e, now)
    return [s.entry.capture_id for s in q.ordered()]


@pytest.mark.parametrize(
    ("name", "entries", "expected"),
    [
        ("priority first", [entry("A", priority=10), entry("B", priority=20)], ["B", "A"]),
        (
            "then business value",
            [entry("A", business_value=1), entry("B", business_value=9)],
            ["B", "A"],
        ),
        (
            "then earlier due",
            [entry("A", due_at=T0 + timedelta(days=2)), entry("B", due_at=T0 + timedelta(days=1))],
            ["B", "A"],
        ),
        (
            "a due time beats none",
            [entry("A"), entry("B", due_at=T0 + timedelta(days=9))],
            ["B", "A"],
        ),
        (
            "then older",
            [entry("A", created_at=T0), entry("B", created_at=T0 - timedelta(seconds=1))],
            ["B", "A"],
        ),
        ("then capture id", [entry("B"), entry("A")], ["A", "B"]),
        (
            "business value weighs 0.1",
            [entry("A", priority=11), entry("B", priority=10, business_value=9)],
            ["A", "B"],
        ),
    ],
)
def test_tie_breaks(name: str, entries: list[QueueEntry], expected: list[str]) -> None:
    assert order(entries) == expected


def test_anti_starvation_age_overtakes_priority() -> None:
    old_low = entry("LOW", priority=10, created_at=T0 - timedelta(hours=41))
    new_high = entry("HIGH", priority=50)
    assert order([old_low, new_high], weights=Weights(age_per_hour=1.0)) == ["LOW", "HIGH"]
    younger = old_low.model_copy(update={"created_at": T0 - timedelta(hours=39)})
    assert order([younger, new_high], weights=Weights(age_per_hour=1.0)) == ["HIGH", "LOW"]


def test_age_does_not_reorder_by_itself_over_time() -> None:
    a, b = entry("A", priority=30), entry("B", priority=10, created_at=T0 - timedelta(hours=5))
    w = Weights(age_per_hour=1.0)
    assert order([a, b], T0, w) == order([a, b], T0 + timedelta(days=30), w)


STEP = {
    "step": {"add": 10, "every_s": 900, "max": 100},
    "jumps": [{"within_s": 3600, "priority": 90}],
    "max": 95,
    "at_risk_s": 1800,
}


@pytest.mark.parametrize(
    ("minutes", "priority"),
    [(0, 50), (14, 50), (15, 60), (44, 70), (60, 90), (120, 95)],
)
def test_steps_jumps_and_max(minutes: int, priority: int) -> None:
    e = entry(reprioritization=STEP, due_at=T0 + timedelta(hours=10))
    s = score(e, T0 + timedelta(minutes=minutes))
    assert s.priority == priority


def test_jump_relative_to_due() -> None:
    e = entry(
        reprioritization={"jumps": [{"within_s": 3600, "priority": 90}]},
        due_at=T0 + timedelta(hours=3),
    )
    assert score(e, T0 + timedelta(hours=1, minutes=59)).priority == 50
    assert score(e, T0 + timedelta(hours=2)).priority == 90


def test_max_never_lowers_the_base_priority() -> None:
    e = entry(priority=120, reprioritization={"max": 100})
    assert score(e, T0).priority == 120


def test_steps_in_business_time() -> None:
    office = BusinessCalendar.build("office", "UTC", {"mon-fri": "09:00-17:00"})
    e = entry(
        created_at=datetime(2024, 3, 1, 16, tzinfo=UTC),
        calendar="office",
        reprioritization={"step": {"add": 10, "every_s": 3600, "max": 100, "business": True}},
    )
    # Friday 16:00 + Saturday and Sunday: only one working hour has passed.
    assert score(e, datetime(2024, 3, 3, 12, tzinfo=UTC), office).priority == 60
    assert next_change(e, datetime(2024, 3, 1, 17, 30, tzinfo=UTC), office) == datetime(
        2024, 3, 4, 10, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("minutes", "state"),
    [
        (0, SlaState.ON_TRACK),
        (90, SlaState.AT_RISK),
        (120, SlaState.BREACHED),
        (180, SlaState.EXPIRED),
    ],
)
def test_sla_states(minutes: int, state: SlaState) -> None:
    e = entry(
        due_at=T0 + timedelta(hours=2),
        expire_at=T0 + timedelta(hours=3),
        reprioritization={"at_risk_s": 1800},
    )
    assert score(e, T0 + timedelta(minutes=minutes)).sla_state is state


def test_breakdown_adds_up_and_explains() -> None:
    e = entry(reprioritization=STEP, business_value=30, due_at=T0 + timedelta(minutes=20))
    s = score(e, T0 + timedelta(minutes=16), Weights())
    assert {t.name for t in s.terms} == {"priority", "business_value", "sla", "age"}
    assert s.value == pytest.approx(sum(t.value for t in s.terms))
    prio = next(t for t in s.terms if t.name == "priority")
    assert "due within 1h -> 90" in prio.detail and prio.value == 90
    assert next(t for t in s.terms if t.name == "sla").detail == "at_risk"


def test_next_change_walks_every_instant_then_goes_quiet() -> None:
    e = entry(
        reprioritization={"step": {"add": 10, "every_s": 900, "max": 70}, "at_risk_s": 3600},
        due_at=T0 + timedelta(hours=3),
        expire_at=T0 + timedelta(hours=5),
    )
    seen, t = [], T0
    while (n := next_change(e, t)) is not None:
        seen.append(n - T0)
        t = n
    # Steps stop at 70 after 30 min; then at risk (2 h), breached (3 h), expired (5 h).
    assert seen == [timedelta(minutes=m) for m in (15, 30, 120, 180, 300)]


def test_next_change_is_exact_no_change_in_between() -> None:
    e = entry(reprioritization=STEP, due_at=T0 + timedelta(hours=2))
    t = T0
    while (n := next_change(e, t)) is not None:
        s = score(e, t)
        for probe in (t + (n - t) / 3, n - timedelta(microseconds=1)):
            p = score(e, probe)
            assert (p.priority, p.sla_state) == (s.priority, s.sla_state)
        after = score(e, n)
        assert (after.priority, after.sla_state) != (s.priority, s.sla_state)
        t = n


def test_quiet_entries_and_held_entries_never_change() -> None:
    assert next_change(entry(), T0) is None
    e = entry(held=True, due_at=T0 + timedelta(hours=1))
    assert next_change(e, T0) is None
