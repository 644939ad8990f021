"""Every lifecycle transition, table-driven: status, assignment state, outcome, queue commands."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from domain_fixtures import RULES, T0, assigned, ev, released, response, run, sla, step

from iwd_stream.contracts.models import (
    AssignmentState,
    HistoryOutcome,
    QueueCommandOp,
    SlaState,
    Status,
    WorkItem,
)
from iwd_stream.domain import SEEN_EVENT_IDS
from iwd_stream.domain.workitem import Rejection, apply

A, D, R, U = (
    HistoryOutcome.APPLIED,
    HistoryOutcome.DUPLICATE,
    HistoryOutcome.REJECTED,
    HistoryOutcome.STALE,
)
N = HistoryOutcome.UNCHANGED
Y = HistoryOutcome.DEFERRED
ENQ, UPD, REM = QueueCommandOp.ENQUEUE, QueueCommandOp.UPDATE, QueueCommandOp.REMOVE


def queued() -> list[Any]:
    return [ev("create", 1, category="billing")]


def offered() -> list[Any]:
    return [*queued(), assigned()]


CASES: list[
    tuple[str, list[Any], Any, HistoryOutcome, Status, AssignmentState, list[QueueCommandOp]]
] = [
    (
        "create with a queue",
        [],
        ev("create", 1, category="billing"),
        A,
        Status.QUEUED,
        AssignmentState.NONE,
        [ENQ],
    ),
    ("create without a queue", [], ev("create", 1), A, Status.ERROR_HELD, AssignmentState.NONE, []),
    (
        "update changes priority",
        queued(),
        ev("update", 2, priority=50),
        A,
        Status.QUEUED,
        AssignmentState.NONE,
        [UPD],
    ),
    (
        "update changes nothing the queue sees",
        queued(),
        ev("update", 2, attributes={"note": "x"}),
        A,
        Status.QUEUED,
        AssignmentState.NONE,
        [],
    ),
    (
        "update moves queue",
        queued(),
        ev("update", 2, category="sales"),
        A,
        Status.QUEUED,
        AssignmentState.NONE,
        [REM, ENQ],
    ),
    (
        "update classifies an error_held item",
        [ev("create", 1)],
        ev("update", 2, category="billing"),
        A,
        Status.QUEUED,
        AssignmentState.NONE,
        [ENQ],
    ),
    (
        "update loses the queue",
        queued(),
        ev("update", 2, category=None),
        A,
        Status.ERROR_HELD,
        AssignmentState.NONE,
        [REM],
    ),
    ("hold", queued(), ev("hold", 2), A, Status.HELD, AssignmentState.NONE, [UPD]),
    (
        "hold when held",
        [*queued(), ev("hold", 2)],
        ev("hold", 3),
        R,
        Status.HELD,
        AssignmentState.NONE,
        [],
    ),
    (
        "hold an error_held item",
        [ev("create", 1)],
        ev("hold", 2),
        A,
        Status.HELD,
        AssignmentState.NONE,
        [],
    ),
    (
        "resume",
        [*queued(), ev("hold", 2)],
        ev("resume", 3),
        A,
        Status.QUEUED,
        AssignmentState.NONE,
        [UPD],
    ),
    ("resume when not held", queued(), ev("resume", 2), R, Status.QUEUED, AssignmentState.NONE, []),
    ("complete", queued(), ev("complete", 2), A, Status.COMPLETED, AssignmentState.NONE, [REM]),
    ("cancel", queued(), ev("cancel", 2), A, Status.CANCELED, AssignmentState.NONE, [REM]),
    (
        "cancel an error_held item",
        [ev("create", 1)],
        ev("cancel", 2),
        A,
        Status.CANCELED,
        AssignmentState.NONE,
        [],
    ),
    (
        "complete when completed",
        [*queued(), ev("complete", 2)],
        ev("complete", 3),
        R,
        Status.COMPLETED,
        AssignmentState.NONE,
        [],
    ),
    (
        "update after completion",
        [*queued(), ev("complete", 2)],
        ev("update", 3, priority=1),
        R,
        Status.COMPLETED,
        AssignmentState.NONE,
        [],
    ),
    (
        "restart",
        queued(),
        ev("restart", 2, at=T0 + timedelta(hours=1)),
        A,
        Status.QUEUED,
        AssignmentState.NONE,
        [UPD],
    ),
    (
        "restart a completed item",
        [*queued(), ev("complete", 2)],
        ev("restart", 2),
        R,
        Status.COMPLETED,
        AssignmentState.NONE,
        [],
    ),
    ("offer made", queued(), assigned(), A, Status.ASSIGNED, AssignmentState.OFFERED, []),
    (
        "offer on a held item",
        [*queued(), ev("hold", 2)],
        assigned(),
        R,
        Status.HELD,
        AssignmentState.NONE,
        [UPD],
    ),
    # The item is not in "sales": the stray entry there is taken out (and its capacity returned).
    (
        "offer from another queue",
        queued(),
        assigned(queue="sales"),
        R,
        Status.QUEUED,
        AssignmentState.NONE,
        [REM],
    ),
    # The stray offer is released by name; the queue keeps the live one (it is not named).
    # The queue offers only entries without a live offer: it lost a1, so a2 supersedes it.
    (
        "second offer while offered",
        offered(),
        assigned("a2"),
        A,
        Status.ASSIGNED,
        AssignmentState.OFFERED,
        [],
    ),
    (
        "accepted",
        offered(),
        response("accepted"),
        A,
        Status.ASSIGNED,
        AssignmentState.ACCEPTED,
        [REM],
    ),
    (
        "declined",
        offered(),
        response("declined"),
        A,
        Status.QUEUED,
        AssignmentState.DECLINED,
        [UPD],
    ),
    (
        "response timed out",
        offered(),
        response("timed_out"),
        A,
        Status.QUEUED,
        AssignmentState.TIMED_OUT,
        [UPD],
    ),
    (
        "response to a dead offer",
        [*queued(), assigned("a0"), response("declined", "a0"), assigned("a1")],
        response("accepted", "a0", response_id="late"),
        R,
        Status.ASSIGNED,
        AssignmentState.OFFERED,
        [],
    ),
    (
        "response before its offer",
        queued(),
        response("accepted", "a1"),
        Y,
        Status.QUEUED,
        AssignmentState.NONE,
        [],
    ),
    (
        "late accept after a decline",
        [*offered(), response("declined")],
        response("accepted"),
        R,
        Status.QUEUED,
        AssignmentState.DECLINED,
        [],
    ),
    (
        "offer timed out in the queue",
        offered(),
        released(),
        A,
        Status.QUEUED,
        AssignmentState.TIMED_OUT,
        [UPD],
    ),
    (
        "offer revoked by the queue",
        offered(),
        released(outcome=AssignmentState.REVOKED),
        A,
        Status.QUEUED,
        AssignmentState.REVOKED,
        [UPD],
    ),
    (
        "released for another offer",
        offered(),
        released("a9"),
        R,
        Status.ASSIGNED,
        AssignmentState.OFFERED,
        [],
    ),
    (
        "complete while offered",
        offered(),
        ev("complete", 2),
        A,
        Status.COMPLETED,
        AssignmentState.REVOKED,
        [REM],
    ),
    (
        "complete while accepted",
        [*offered(), response("accepted")],
        ev("complete", 2),
        A,
        Status.COMPLETED,
        AssignmentState.ACCEPTED,
        [],
    ),
    (
        "hold while offered",
        offered(),
        ev("hold", 2),
        A,
        Status.HELD,
        AssignmentState.REVOKED,
        [UPD],
    ),
    (
        "hold while accepted",
        [*offered(), response("accepted")],
        ev("hold", 2),
        A,
        Status.HELD,
        AssignmentState.REVOKED,
        [ENQ],
    ),
    (
        "queue moves while offered",
        offered(),
        ev("update", 2, category="sales"),
        A,
        Status.QUEUED,
        AssignmentState.REVOKED,
        [REM, ENQ],
    ),
    (
        "restart while offered",
        offered(),
        ev("restart", 2),
        A,
        Status.QUEUED,
        AssignmentState.NONE,
        [UPD],
    ),
    (
        "sla at risk",
        queued(),
        sla(SlaState.AT_RISK, T0 + timedelta(hours=3)),
        A,
        Status.QUEUED,
        AssignmentState.NONE,
        [],
    ),
    (
        "sla not reached yet",
        queued(),
        sla(SlaState.AT_RISK, T0 + timedelta(hours=1)),
        N,
        Status.QUEUED,
        AssignmentState.NONE,
        [],
    ),
    (
        "update of an unknown item creates it",
        [],
        ev("update", 3, category="billing"),
        A,
        Status.QUEUED,
        AssignmentState.NONE,
        [ENQ],
    ),
    (
        "complete of an unknown item",
        [],
        ev("complete", 3),
        A,
        Status.COMPLETED,
        AssignmentState.NONE,
        [],
    ),
    (
        "hold of an unknown item",
        [],
        ev("hold", 3, category="billing"),
        A,
        Status.HELD,
        AssignmentState.NONE,
        [ENQ],
    ),
    (
        "older version",
        [*queued(), ev("update", 5, priority=9)],
        ev("update", 4, priority=3),
        U,
        Status.QUEUED,
        AssignmentState.NONE,
        [],
    ),
    (
        "older unversioned event",
        [ev("create", at=T0, category="billing"), ev("update", at=T0 + timedelta(1), priority=9)],
        ev("update", at=T0 + timedelta(hours=1), priority=3),
        U,
        Status.QUEUED,
        AssignmentState.NONE,
        [],
    ),
    (
        "newer version with no fields",
        queued(),
        ev("update", 2),
        N,
        Status.QUEUED,
        AssignmentState.NONE,
        [],
    ),
    (
        "same version, nothing new",
        [*queued(), ev("update", 2, priority=9)],
        ev("update", 2),
        N,
        Status.QUEUED,
        AssignmentState.NONE,
        [],
    ),
]


@pytest.mark.parametrize(
    ("before", "event", "outcome", "status", "assignment", "ops"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_transition(
    before: list[Any],
    event: Any,
    outcome: HistoryOutcome,
    status: Status,
    assignment: AssignmentState,
    ops: list[QueueCommandOp],
) -> None:
    item = run(*before)
    out = step(item, event)
    assert out.result is outcome
    assert out.item is not None
    assert out.item.status is status
    assert out.item.assignment_state is assignment
    assert [c.op for c in out.commands] == ops
    assert out.history and all(h.outcome is outcome for h in out.history)
    assert out.history[-1].to_status is status
    if outcome in (D, U, N):
        assert not out.changed and out.item == item
    else:
        assert out.item.seq == (item.seq if item else 0) + len(out.history)
        assert [h.seq for h in out.history] == list(
            range((item.seq if item else 0) + 1, out.item.seq + 1)
        )


def test_duplicate_event_id_changes_nothing() -> None:
    create = ev("create", 1, category="billing")
    item = run(create)
    out = step(item, create)
    assert out.result is D and not out.changed and out.item == item and out.commands == ()


def test_replayed_response_is_a_duplicate() -> None:
    r = response("declined", response_id="resp-1")
    item = run(*offered(), r)
    assert step(item, r).result is D


def test_rejections_are_typed_and_explained() -> None:
    out = step(run(*queued()), ev("resume", 2))
    assert out.rejection is Rejection.NOT_HELD
    assert out.history[0].detail["rejection"] == "not_held"
    assert "not held" in (out.history[0].reason or "")


def test_restart_passes_through_restarted_and_clears_exclusions() -> None:
    item = run(*offered(), response("declined"))
    assert item is not None and item.excluded_resources == ["r1"]
    out = step(item, ev("restart", 2, at=T0 + timedelta(hours=1)))
    assert [(h.from_status, h.to_status) for h in out.history] == [
        (Status.QUEUED, Status.RESTARTED),
        (Status.RESTARTED, Status.QUEUED),
    ]
    assert out.item is not None and out.item.excluded_resources == [] and out.item.restarts == 1
    entry = out.commands[0].entry
    assert entry is not None and entry.created_at == T0 + timedelta(hours=1)  # age starts over


def test_decline_excludes_the_resource_and_releases_the_offer_by_name() -> None:
    out = step(run(*offered()), response("declined"))
    cmd = out.commands[0]
    assert cmd.release_assignment_id == "a1" and not cmd.return_capacity
    assert cmd.entry is not None and cmd.entry.excluded_resources == ["r1"]


def test_complete_while_offered_returns_capacity() -> None:
    cmd = step(run(*offered()), ev("complete", 2)).commands[0]
    assert (cmd.op, cmd.release_assignment_id, cmd.return_capacity) == (REM, "a1", True)


def test_accept_removes_without_returning_capacity() -> None:
    cmd = step(run(*offered()), response("accepted")).commands[0]
    assert (cmd.op, cmd.release_assignment_id, cmd.return_capacity) == (REM, "a1", False)


def test_sla_expiry_rejects_the_item_and_removes_it() -> None:
    item = run(ev("create", 1, category="billing", expire_at=T0 + timedelta(hours=2)))
    out = step(item, sla(SlaState.EXPIRED, T0 + timedelta(hours=2)))
    assert (
        out.item is not None and out.item.status is Status.REJECTED and out.item.reason == "expired"
    )
    assert [c.op for c in out.commands] == [REM]
    assert step(out.item, ev("update", 2, priority=1)).result is R


def test_expiry_moved_by_an_update_makes_the_sla_event_stale() -> None:
    item = run(
        ev("create", 1, category="billing", expire_at=T0 + timedelta(hours=2)),
        ev("update", 2, expire_at=T0 + timedelta(days=2)),
    )
    out = step(item, sla(SlaState.EXPIRED, T0 + timedelta(hours=2)))
    assert out.item is not None and out.item.status is Status.QUEUED


def test_item_created_after_its_expiry_is_rejected() -> None:
    out = step(None, ev("create", 1, category="billing", expire_at=T0 - timedelta(minutes=1)))
    assert out.item is not None and out.item.status is Status.REJECTED and out.commands == ()


def test_engine_events_for_unknown_items_are_rejected_without_creating_one() -> None:
    for event in (assigned(), released(), sla(SlaState.AT_RISK, T0), response("accepted")):
        out = step(None, event)
        assert out.item is None and out.result is R and out.rejection is Rejection.UNKNOWN_ITEM


def test_event_of_another_item_is_rejected() -> None:
    item = run(*queued())
    out = step(item, ev("update", 2, capture_id="C2", priority=1))
    assert out.rejection is Rejection.TENANT_MISMATCH


def test_late_older_update_still_contributes_fields_nobody_overwrote() -> None:
    item = run(ev("create", 1, category="billing"), ev("update", 3, priority=30))
    out = step(item, ev("update", 2, priority=20, business_value=70))
    assert out.result is A and out.item is not None
    assert (out.item.fields.priority, out.item.fields.business_value) == (30, 70)


def test_seen_event_ids_are_bounded() -> None:
    events = [ev("create", 1, category="billing")] + [
        ev("update", v, priority=v) for v in range(2, 100)
    ]
    item = run(*events)
    assert item is not None and len(item.seen_event_ids) == SEEN_EVENT_IDS
    assert item.seen_event_ids[-1] == events[-1].event_id


def test_history_and_state_are_valid_contracts() -> None:
    from iwd_stream.contracts import decode, encode
    from iwd_stream.contracts.models import HistoryRecord

    out = step(run(*offered()), response("declined"))
    assert out.item is not None
    assert decode(encode(out.item), WorkItem) == out.item
    for h in out.history:
        assert decode(encode(h), HistoryRecord) == h


def test_an_answer_that_overtook_its_offer_is_applied_when_the_offer_arrives():
    # The routing consumer's answer and the engine's own `assigned` event travel on different
    # topics: the answer can reach the item first. It waits, then applies with its offer.
    item = run(*queued())
    early = apply(item, response("accepted", "a1"), RULES, T0)
    assert early.result is HistoryOutcome.DEFERRED and early.item.status is Status.QUEUED
    out = apply(early.item, assigned("a1"), RULES, T0)
    assert out.item.assignment_state is AssignmentState.ACCEPTED
    assert [h.event_type for h in out.history] == ["assigned", "response.accepted"]
    assert [c.op for c in out.commands] == [REM]  # accepted: out of the queue
    assert out.item.early_responses == []
