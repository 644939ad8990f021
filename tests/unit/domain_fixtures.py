"""Small builders for domain tests: events, responses and a tiny rule set (no mocks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from iwd_stream.contracts.models import (
    AssignmentRef,
    AssignmentResponse,
    AssignmentState,
    EventType,
    LifecycleEvent,
    ResponseOutcome,
    SlaState,
    WorkItem,
    WorkItemFields,
)
from iwd_stream.domain import apply, parse_rules
from iwd_stream.domain.workitem import Outcome

T0 = datetime(2024, 3, 4, 9, tzinfo=UTC)

RULES = parse_rules(
    """
rules_version: 1
defaults: {priority: 10, business_value: 5}
classification:
  global:
    - {name: by-category, when: {category: {missing: false}}, set: {queue: {from: category}, due_in: 4h}}
sla:
  - {name: default, at_risk_before_due: 1h}
""",
    "test.yaml",
)

_ids = count(1)


def ev(
    type_: str,
    version: int | None = None,
    *,
    at: datetime | None = None,
    event_id: str | None = None,
    capture_id: str = "C1",
    **fields: Any,
) -> LifecycleEvent:
    return LifecycleEvent(
        type=EventType(type_),
        event_id=event_id or f"e{next(_ids)}",
        tenant="acme",
        capture_id=capture_id,
        source="test",
        occurred_at=at or T0,
        version=version,
        fields=WorkItemFields(**fields),
    )


def assigned(
    assignment_id: str = "a1", queue: str = "billing", resource: str | None = "r1"
) -> LifecycleEvent:
    return LifecycleEvent(
        type=EventType.ASSIGNED,
        event_id=f"{assignment_id}:offered",
        tenant="acme",
        capture_id="C1",
        source="iwd.queues",
        occurred_at=T0,
        assignment=AssignmentRef(
            assignment_id=assignment_id,
            queue=queue,
            resource_id=resource,
            outcome=AssignmentState.OFFERED,
            offer_deadline=T0 + timedelta(seconds=30),
        ),
    )


def released(
    assignment_id: str = "a1",
    outcome: AssignmentState = AssignmentState.TIMED_OUT,
    resource: str | None = "r1",
) -> LifecycleEvent:
    return LifecycleEvent(
        type=EventType.RELEASED,
        event_id=f"{assignment_id}:{outcome.value}",
        tenant="acme",
        capture_id="C1",
        source="iwd.queues",
        occurred_at=T0,
        assignment=AssignmentRef(
            assignment_id=assignment_id, queue="billing", resource_id=resource, outcome=outcome
        ),
    )


def sla(state: SlaState, at: datetime) -> LifecycleEvent:
    return LifecycleEvent(
        type=EventType.SLA,
        event_id=f"sla{next(_ids)}",
        tenant="acme",
        capture_id="C1",
        source="iwd.queues",
        occurred_at=at,
        sla_state=state,
    )


def response(
    outcome: str, assignment_id: str = "a1", resource: str = "r1", response_id: str | None = None
) -> AssignmentResponse:
    return AssignmentResponse(
        response_id=response_id or f"r{next(_ids)}",
        assignment_id=assignment_id,
        tenant="acme",
        capture_id="C1",
        queue="billing",
        resource_id=resource,
        outcome=ResponseOutcome(outcome),
        occurred_at=T0,
    )


def run(*events: Any, now: datetime = T0) -> WorkItem | None:
    item = None
    for e in events:
        item = apply(item, e, RULES, now).item
    return item


def step(item: WorkItem | None, event: Any, now: datetime = T0) -> Outcome:
    return apply(item, event, RULES, now)
