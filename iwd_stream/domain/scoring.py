"""Queue order, score, SLA state and the next instant either changes.

The order of a queue is a total order on :func:`sort_key`. The score behind it is

    score(now) = priority_weight * effective_priority
               + business_value_weight * business_value
               + sla bonus (at_risk / breached)
               + age_per_hour * hours since ``created_at``          (anti-starvation)

The age term grows at the same rate for every item of a queue, so it never reorders two items
by itself changing: ``age_rate * (now - created_at)`` orders exactly like ``-created_at``. The
key therefore folds it in as ``-age_rate * created_at`` and stays constant between the discrete
instants where the effective priority (steps, jumps) or the SLA state changes. Those instants
are what :func:`next_change` returns, so a queue only re-keys items when something changes.

All key arithmetic is on integers (microseconds, fixed-point weights): the order is exact and
cannot be upset by float rounding.

The policy an entry carries in ``QueueEntry.reprioritization`` (built by the rules from the
matching ``reprioritization`` and ``sla`` rules; every key optional)::

    {
      "rule": "critical",                                   # which rule it came from
      "step": {"add": 10, "every_s": 900, "max": 100, "business": True},
      "jumps": [{"within_s": 3600, "priority": 90}],        # >= 90 once due within 1 h
      "max": 100,                                           # cap on what steps/jumps reach
      "at_risk_s": 3600,                                    # at risk 1 h before due_at
    }

``business`` means the step interval is counted in the entry's ``calendar``; jumps and the
SLA thresholds are measured in elapsed time before ``due_at`` (which itself was computed in
business time by the rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from iwd_stream.contracts.models import QueueEntry, ScoreTerm, SlaState
from iwd_stream.domain._build import build
from iwd_stream.domain.business_calendar import BusinessCalendar, add_time, elapsed
from iwd_stream.domain.timeutil import from_us, to_us

# Fixed-point scale: one score point is SCALE key units, so an age rate of r points/hour is
# r * 1000 units per microsecond, an integer for any rate with three decimals.
SCALE = 3_600_000_000_000
_NO_DUE = 1 << 62


@dataclass(frozen=True)
class Weights:
    """How much each term of the score counts, in score points.

    >>> Weights().age_per_hour
    1.0
    """

    priority_weight: float = 1.0
    business_value_weight: float = 0.1
    age_per_hour: float = 1.0
    at_risk_bonus: float = 10.0
    breached_bonus: float = 20.0

    def units(self) -> tuple[int, int, int, int, int]:
        """Return the weights as integer key units (priority, value, age/us, at-risk, breached)."""
        return (
            round(self.priority_weight * SCALE),
            round(self.business_value_weight * SCALE),
            round(self.age_per_hour * 1000),
            round(self.at_risk_bonus * SCALE),
            round(self.breached_bonus * SCALE),
        )


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True)
class Step:
    add: int
    every: timedelta
    max: int
    business: bool = False


@dataclass(frozen=True)
class Jump:
    within: timedelta
    priority: int


@dataclass(frozen=True)
class Reprioritization:
    """The parsed form of ``QueueEntry.reprioritization`` (see the module docstring)."""

    rule: str | None = None
    step: Step | None = None
    jumps: tuple[Jump, ...] = ()
    max: int | None = None
    at_risk: timedelta | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reprioritization:
        """Parse the wire dict; unknown keys are ignored so that newer writers stay readable.

        >>> Reprioritization.from_dict({"step": {"add": 10, "every_s": 900, "max": 100}}).step.every
        datetime.timedelta(seconds=900)
        """
        if not data:
            return _EMPTY
        step = data.get("step")
        return cls(
            rule=data.get("rule"),
            step=Step(
                add=int(step["add"]),
                every=timedelta(seconds=float(step["every_s"])),
                max=int(step["max"]),
                business=bool(step.get("business", False)),
            )
            if step
            else None,
            jumps=tuple(
                Jump(timedelta(seconds=float(j["within_s"])), int(j["priority"]))
                for j in data.get("jumps", ())
            ),
            max=int(data["max"]) if data.get("max") is not None else None,
            at_risk=timedelta(seconds=float(data["at_risk_s"]))
            if data.get("at_risk_s") is not None
            else None,
        )

    def to_dict(self) -> dict[str, object]:
        """Return the wire dict (JSON-friendly, only the keys that are set)."""
        out: dict[str, object] = {}
        if self.rule is not None:
            out["rule"] = self.rule
        if self.step is not None:
            out["step"] = {
                "add": self.step.add,
                "every_s": self.step.every.total_seconds(),
                "max": self.step.max,
                "business": self.step.business,
            }
        if self.jumps:
            out["jumps"] = [
                {"within_s": j.within.total_seconds(), "priority": j.priority} for j in self.jumps
            ]
        if self.max is not None:
            out["max"] = self.max
        if self.at_risk is not None:
            out["at_risk_s"] = self.at_risk.total_seconds()
        return out


_EMPTY = Reprioritization()


def sla_state(
    due_at: datetime | None,
    expire_at: datetime | None,
    at_risk: timedelta | None,
    now: datetime,
) -> SlaState:
    """Return the SLA state at ``now``; each threshold is inclusive (at_risk *at* due - at_risk).

    >>> from datetime import UTC
    >>> due = datetime(2024, 1, 1, 12, tzinfo=UTC)
    >>> [sla_state(due, None, timedelta(hours=1), datetime(2024, 1, 1, h, tzinfo=UTC)).value
    ...  for h in (10, 11, 12)]
    ['on_track', 'at_risk', 'breached']
    """
    if expire_at is not None and now >= expire_at:
        return SlaState.EXPIRED
    if due_at is None:
        return SlaState.ON_TRACK
    if now >= due_at:
        return SlaState.BREACHED
    if at_risk is not None and now >= due_at - at_risk:
        return SlaState.AT_RISK
    return SlaState.ON_TRACK


class Scorable:
    """A queue entry with its policy parsed and its calendar resolved, ready to score often.

    Parsing the policy dict and finding when the steps reach their cap is done once here, not
    on every score; the queue index keeps one of these per entry.
    """

    __slots__ = (
        "entry",
        "policy",
        "calendar",
        "created_us",
        "due_us",
        "_step_cap_at",
        "_step_cap_n",
    )

    def __init__(
        self,
        entry: QueueEntry,
        calendar: BusinessCalendar | None = None,
        policy: Reprioritization | None = None,
    ) -> None:
        self.entry = entry
        self.policy = (
            policy if policy is not None else Reprioritization.from_dict(entry.reprioritization)
        )
        self.calendar = calendar
        self.created_us = to_us(entry.created_at)
        self.due_us = to_us(entry.due_at) if entry.due_at is not None else _NO_DUE
        self._step_cap_at: datetime | None = None
        self._step_cap_n = 0
        step = self.policy.step
        if step is not None and step.add > 0 and step.every > timedelta(0):
            cap = step.max if self.policy.max is None else min(step.max, self.policy.max)
            gap = cap - entry.priority
            if gap > 0:
                # Past this instant the steps are capped: no need to count business time.
                self._step_cap_n = -(-gap // step.add)
                self._step_cap_at = self._step_at(self._step_cap_n)

    def _step_calendar(self) -> BusinessCalendar | None:
        step = self.policy.step
        return self.calendar if step is not None and step.business else None

    def _step_at(self, n: int) -> datetime:
        step = self.policy.step
        assert step is not None
        return add_time(self._step_calendar(), self.entry.created_at, step.every * n)

    def steps(self, now: datetime) -> int:
        """Return how many step increments have elapsed at ``now`` (capped where they stop)."""
        step = self.policy.step
        if step is None or self._step_cap_at is None:
            return 0
        if now >= self._step_cap_at:
            return self._step_cap_n
        spent = elapsed(self._step_calendar(), self.entry.created_at, now)
        return min(self._step_cap_n, spent // step.every)

    def priority(self, now: datetime) -> tuple[int, str]:
        """Return the effective priority at ``now`` and how it came about.

        Steps and jumps only raise the priority; ``max`` caps what they reach, never the base.
        """
        entry, policy = self.entry, self.policy
        base = entry.priority
        p = base
        why = f"base {base}"
        if policy.step is not None:
            n = self.steps(now)
            if n:
                stepped = min(policy.step.max, base + policy.step.add * n)
                if stepped > p:
                    p = stepped
                    why += f" +{policy.step.add}x{n} steps"
        if entry.due_at is not None:
            for jump in policy.jumps:
                if now >= entry.due_at - jump.within and jump.priority > p:
                    p = jump.priority
                    why += f", due within {_fmt(jump.within)} -> {jump.priority}"
        if policy.max is not None and p > policy.max:
            p = max(base, policy.max)
            why += f", capped at {policy.max}"
        return p, why

    def sla(self, now: datetime) -> SlaState:
        return sla_state(self.entry.due_at, self.entry.expire_at, self.policy.at_risk, now)

    def key_at(self, now: datetime, units: tuple[int, int, int, int, int]) -> SortKey:
        """Return the sort key valid from ``now`` until :meth:`next_change`."""
        wp, wb, wa, wr, wbr = units
        p, _ = self.priority(now)
        sla = self.sla(now)
        bonus = wr if sla is SlaState.AT_RISK else wbr if sla in _LATE else 0
        k = wp * p + wb * self.entry.business_value + bonus - wa * self.created_us
        return (-k, self.due_us, self.created_us, self.entry.capture_id)

    def next_change(self, now: datetime) -> datetime | None:
        """Return the first instant after ``now`` at which the score or the SLA state changes."""
        entry, policy = self.entry, self.policy
        candidates: list[datetime] = []
        if self._step_cap_at is not None and now < self._step_cap_at:
            candidates.append(self._step_at(self.steps(now) + 1))
        if entry.due_at is not None:
            due = entry.due_at
            candidates.extend(due - j.within for j in policy.jumps)
            if policy.at_risk is not None:
                candidates.append(due - policy.at_risk)
            candidates.append(due)
        if entry.expire_at is not None:
            candidates.append(entry.expire_at)
        later = [c for c in candidates if c > now]
        return min(later) if later else None


_LATE = frozenset({SlaState.BREACHED, SlaState.EXPIRED})

SortKey = tuple[int, int, int, str]


def _fmt(d: timedelta) -> str:
    s = int(d.total_seconds())
    if s % 86400 == 0:
        return f"{s // 86400}d"
    if s % 3600 == 0:
        return f"{s // 3600}h"
    if s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"


@dataclass(frozen=True)
class Score:
    """A score at one instant: the number, its terms, the SLA state and the sort key."""

    value: float
    terms: tuple[ScoreTerm, ...]
    sla_state: SlaState
    priority: int
    key: SortKey


def score_scorable(item: Scorable, now: datetime, weights: Weights = DEFAULT_WEIGHTS) -> Score:
    """Score a prepared entry at ``now`` with its breakdown (see :func:`score`)."""
    entry = item.entry
    p, why = item.priority(now)
    sla = item.sla(now)
    age_h = max(0.0, (now - entry.created_at).total_seconds() / 3600.0)
    bonus = (
        weights.at_risk_bonus
        if sla is SlaState.AT_RISK
        else weights.breached_bonus
        if sla in _LATE
        else 0.0
    )
    bv = entry.business_value
    # Built without re-validation: names are ours, values are floats, details are strings.
    terms = (
        build(ScoreTerm, {"name": "priority", "value": weights.priority_weight * p, "detail": why}),
        build(
            ScoreTerm,
            {
                "name": "business_value",
                "value": weights.business_value_weight * bv,
                "detail": f"{bv} x {weights.business_value_weight}",
            },
        ),
        build(ScoreTerm, {"name": "sla", "value": bonus, "detail": sla.value}),
        build(
            ScoreTerm,
            {
                "name": "age",
                "value": weights.age_per_hour * age_h,
                "detail": f"{age_h:.2f} h x {weights.age_per_hour}/h",
            },
        ),
    )
    return Score(
        value=round(sum(t.value for t in terms), 6),
        terms=terms,
        sla_state=sla,
        priority=p,
        key=item.key_at(now, weights.units()),
    )


def score(
    entry: QueueEntry,
    now: datetime,
    calendar: BusinessCalendar | None = None,
    weights: Weights = DEFAULT_WEIGHTS,
) -> Score:
    """Score a queue entry at ``now``.

    >>> from datetime import UTC
    >>> t0 = datetime(2024, 1, 1, 9, tzinfo=UTC)
    >>> e = QueueEntry(tenant="t", capture_id="A", queue="q", priority=50, business_value=20,
    ...                created_at=t0, enqueued_at=t0,
    ...                reprioritization={"step": {"add": 10, "every_s": 900, "max": 100}})
    >>> s = score(e, t0 + timedelta(minutes=31))
    >>> s.priority, [(t.name, round(t.value, 2)) for t in s.terms]
    (70, [('priority', 70.0), ('business_value', 2.0), ('sla', 0.0), ('age', 0.52)])
    """
    return score_scorable(Scorable(entry, calendar), now, weights)


def next_change(
    entry: QueueEntry, now: datetime, calendar: BusinessCalendar | None = None
) -> datetime | None:
    """Return the next instant after ``now`` at which ``entry``'s score or SLA state changes.

    None means never: the item is quiet until a command changes it. Held entries are frozen.

    >>> from datetime import UTC
    >>> t0 = datetime(2024, 1, 1, 9, tzinfo=UTC)
    >>> e = QueueEntry(tenant="t", capture_id="A", queue="q", priority=50, created_at=t0,
    ...                enqueued_at=t0, due_at=t0 + timedelta(hours=4),
    ...                reprioritization={"step": {"add": 10, "every_s": 900, "max": 60},
    ...                                  "at_risk_s": 3600})
    >>> [str(next_change(e, t).time()) for t in (t0, t0 + timedelta(minutes=20))]
    ['09:15:00', '12:00:00']
    >>> next_change(e, t0 + timedelta(hours=5)) is None
    True
    """
    if entry.held:
        return None
    return Scorable(entry, calendar).next_change(now)


def first_instant(us: int) -> datetime:
    """Return integer epoch microseconds as a datetime (for indexes that store integers)."""
    return from_us(us)
