"""Ordered index, timeline, queue-command merge rules and the dispatch policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from iwd_stream.contracts.models import (
    Capacity,
    Offer,
    QueueCommand,
    QueueCommandOp,
    QueueEntry,
    ResourceOffer,
    SlaState,
)
from iwd_stream.domain import (
    QueueIndex,
    SortedKeyList,
    Timeline,
    apply_command,
    assignment_id,
    capacity_from_offer,
    dispatch,
    skip_reason,
)

T0 = datetime(2024, 3, 4, 9, tzinfo=UTC)
TIMEOUT = timedelta(seconds=30)


def entry(cid: str, priority: int = 50, **kw: Any) -> QueueEntry:
    return QueueEntry(
        tenant="t",
        capture_id=cid,
        queue="q",
        priority=priority,
        created_at=T0,
        enqueued_at=T0,
        **kw,
    )


def cap(cid: str = "k1", credits: int = 1, resource: ResourceOffer | None = None) -> Capacity:
    return Capacity(
        capacity_id=cid, tenant="t", queue="q", credits=credits, resource=resource, occurred_at=T0
    )


def cmd(
    op: QueueCommandOp, e: QueueEntry | None, seq: int, cid: str = "A", **kw: Any
) -> QueueCommand:
    return QueueCommand(
        op=op,
        command_id=f"c{seq}",
        tenant="t",
        queue="q",
        capture_id=cid,
        item_seq=seq,
        entry=e,
        issued_at=T0,
        **kw,
    )


def offer(aid: str = "a1", resource: str | None = "r1") -> Offer:
    return Offer(
        assignment_id=aid,
        capacity_id="k0",
        resource_id=resource,
        resource=ResourceOffer(resource_id=resource) if resource else None,
        offered_at=T0,
        offer_deadline=T0 + TIMEOUT,
    )


def test_sorted_key_list_against_sorted() -> None:
    import random

    rnd = random.Random(7)
    s = SortedKeyList(load=4)
    ref: set[tuple[int, int, int, str]] = set()
    for i in range(2000):
        k = (rnd.randrange(50), 0, 0, str(rnd.randrange(40)))
        if k in ref and rnd.random() < 0.6:
            s.remove(k)
            ref.remove(k)
        elif k not in ref:
            s.add(k)
            ref.add(k)
        if i % 100 == 0:
            assert list(s) == sorted(ref) and len(s) == len(ref)
    assert list(s) == sorted(ref)
    with pytest.raises(KeyError):
        s.remove((999, 0, 0, "x"))


def test_timeline_lazy_deletion_and_compaction() -> None:
    t = Timeline()
    for i in range(5000):
        t.schedule("k", i)  # rescheduling piles up stale heap rows...
    assert len(t) == 1 and len(t._heap) < 2100  # ...which compaction bounds
    assert list(t.pop_due(4998)) == [] and list(t.pop_due(4999)) == ["k"]
    assert t.peek() is None


def test_advance_touches_only_due_entries_and_reports_sla_changes() -> None:
    q = QueueIndex()
    q.upsert(entry("QUIET"), T0)
    q.upsert(entry("DUE", due_at=T0 + timedelta(hours=1), reprioritization={"at_risk_s": 1800}), T0)
    assert q.next_wakeup() == T0 + timedelta(minutes=30)
    assert q.advance(T0 + timedelta(minutes=29)) == []
    changes = q.advance(T0 + timedelta(minutes=30))
    assert [(c.entry.capture_id, c.sla_before, c.sla_after) for c in changes] == [
        ("DUE", SlaState.ON_TRACK, SlaState.AT_RISK)
    ]
    assert q.advance(T0 + timedelta(minutes=30)) == []  # idempotent
    assert q.next_wakeup() == T0 + timedelta(hours=1)


def test_advance_reorders_when_a_step_lands() -> None:
    q = QueueIndex()
    q.upsert(entry("STATIC", priority=55), T0)
    q.upsert(
        entry(
            "RISING", priority=50, reprioritization={"step": {"add": 10, "every_s": 900, "max": 90}}
        ),
        T0,
    )
    assert [s.entry.capture_id for s in q.ordered()] == ["STATIC", "RISING"]
    q.advance(T0 + timedelta(minutes=15))
    assert [s.entry.capture_id for s in q.ordered()] == ["RISING", "STATIC"]


def test_offer_deadline_times_out_in_advance() -> None:
    q = QueueIndex()
    q.upsert(entry("A").model_copy(update={"offer": offer()}), T0)
    changes = q.advance(T0 + TIMEOUT)
    assert len(changes) == 1 and changes[0].timed_out is not None
    e = q.get("A")
    assert e is not None and e.offer is None and e.excluded_resources == ["r1"]


# --- queue command merge rules ----------------------------------------------------------------


def test_update_keeps_a_live_offer_it_does_not_name() -> None:
    live = entry("A").model_copy(update={"offer": offer()})
    r = apply_command(live, cmd(QueueCommandOp.UPDATE, entry("A", 70), 2))
    assert (
        r.entry is not None
        and r.entry.offer == offer()
        and r.entry.priority == 70
        and r.freed is None
    )


def test_update_naming_the_offer_clears_it_and_returns_capacity_only_when_asked() -> None:
    live = entry("A").model_copy(update={"offer": offer()})
    declined = apply_command(
        live, cmd(QueueCommandOp.UPDATE, entry("A"), 2, release_assignment_id="a1")
    )
    assert declined.entry is not None and declined.entry.offer is None and declined.freed is None
    revoked = apply_command(
        live,
        cmd(
            QueueCommandOp.UPDATE,
            entry("A", held=True),
            2,
            release_assignment_id="a1",
            return_capacity=True,
        ),
    )
    assert revoked.freed == offer()


@pytest.mark.parametrize(
    ("release", "return_capacity", "freed"),
    [(None, False, True), ("a1", True, True), ("a1", False, False), ("other", False, True)],
)
def test_remove_of_an_offered_entry(
    release: str | None, return_capacity: bool, freed: bool
) -> None:
    live = entry("A").model_copy(update={"offer": offer()})
    r = apply_command(
        live,
        cmd(
            QueueCommandOp.REMOVE,
            None,
            2,
            release_assignment_id=release,
            return_capacity=return_capacity,
        ),
    )
    assert r.entry is None and r.changed and (r.freed is not None) is freed


def test_stale_and_empty_commands_are_ignored() -> None:
    current = entry("A", item_seq=5)
    assert apply_command(current, cmd(QueueCommandOp.UPDATE, entry("A", 1), 4)).ignored
    assert apply_command(None, cmd(QueueCommandOp.REMOVE, None, 1)).ignored == "not in queue"
    assert apply_command(None, cmd(QueueCommandOp.UPDATE, None, 1)).ignored


def test_update_keeps_exclusions_enqueue_replaces_them() -> None:
    current = entry("A", excluded_resources=["r1"])
    upd = apply_command(
        current, cmd(QueueCommandOp.UPDATE, entry("A", excluded_resources=["r2"]), 2)
    )
    assert upd.entry is not None and upd.entry.excluded_resources == ["r2", "r1"]
    enq = apply_command(current, cmd(QueueCommandOp.ENQUEUE, entry("A"), 2))
    assert enq.entry is not None and enq.entry.excluded_resources == []


def test_returned_capacity_is_the_same_resource() -> None:
    c = capacity_from_offer(offer(), "t", "q", T0)
    assert c.resource is not None and c.resource.resource_id == "r1" and c.credits == 1
    assert c.capacity_id == "k0:returned:a1"


# --- dispatch ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "resource", "reason"),
    [
        ({"held": True}, None, "held"),
        ({"offer": "live"}, None, "offered"),
        ({"activate_at": T0 + timedelta(minutes=1)}, None, "not_active"),
        ({"activate_at": T0}, None, None),
        ({"expire_at": T0}, None, "expired"),
        ({"excluded_resources": ["r1"]}, ResourceOffer(resource_id="r1"), "excluded"),
        ({"excluded_resources": ["r1"]}, None, None),
        ({"skills": ["fr"]}, ResourceOffer(resource_id="r1", skills=["en"]), "skills"),
        ({"skills": ["fr"]}, ResourceOffer(resource_id="r1", skills=["fr", "en"]), None),
        ({"skills": ["fr"]}, None, None),
        ({"media_type": "voice"}, ResourceOffer(resource_id="r1", media_types=["chat"]), "media"),
        ({"media_type": "voice"}, ResourceOffer(resource_id="r1", media_types=[]), None),
    ],
)
def test_skip_reasons(
    kw: dict[str, Any], resource: ResourceOffer | None, reason: str | None
) -> None:
    if kw.get("offer") == "live":
        kw = {"offer": offer()}
    assert skip_reason(entry("A", **kw), resource, T0) == reason


def test_dispatch_takes_the_best_eligible_items_up_to_capacity() -> None:
    q = QueueIndex()
    q.upsert(entry("HELD", 99, held=True), T0)
    q.upsert(entry("FRENCH", 90, skills=["fr"]), T0)
    q.upsert(entry("B", 80), T0)
    q.upsert(entry("C", 70), T0)
    q.upsert(entry("D", 60), T0)
    r = dispatch(
        q,
        cap(credits=5, resource=ResourceOffer(resource_id="r1", skills=["en"], slots=2)),
        T0,
        TIMEOUT,
    )
    assert [a.capture_id for a in r.assignments] == ["B", "C"]
    a = r.assignments[0]
    assert a.resource_id == "r1" and a.offer_deadline == T0 + TIMEOUT
    assert a.assignment_id == assignment_id("t", "q", "B", 0, "k1")
    assert [e.offer.assignment_id for e in r.entries if e.offer] == [
        x.assignment_id for x in r.assignments
    ]
    assert [ev.assignment.assignment_id for ev in r.events if ev.assignment] == [
        x.assignment_id for x in r.assignments
    ]
    assert {t.name for t in a.breakdown} >= {"priority", "age"}


def test_dispatch_over_an_empty_or_exhausted_queue_offers_nothing() -> None:
    q = QueueIndex()
    assert dispatch(q, cap(), T0, TIMEOUT).assignments == ()
    q.upsert(entry("A"), T0)
    assert len(dispatch(q, cap("k1"), T0, TIMEOUT).assignments) == 1
    assert dispatch(q, cap("k2"), T0, TIMEOUT).assignments == ()


def test_offered_held_and_inactive_entries_are_parked_out_of_the_dispatch_scan() -> None:
    q = QueueIndex()
    long_offer = offer().model_copy(update={"offer_deadline": T0 + timedelta(minutes=10)})
    q.upsert(entry("OFFERED", 90).model_copy(update={"offer": long_offer}), T0)
    q.upsert(entry("HELD", 80, held=True), T0)
    q.upsert(entry("LATER", 70, activate_at=T0 + timedelta(minutes=5)), T0)
    q.upsert(entry("READY", 10), T0)
    assert [s.entry.capture_id for s in q.ready()] == ["READY"]
    assert [s.entry.capture_id for s in q.ordered()] == ["OFFERED", "HELD", "LATER", "READY"]
    q.advance(T0 + timedelta(minutes=5))  # LATER becomes active and joins the scan
    assert [s.entry.capture_id for s in q.ready()] == ["LATER", "READY"]
    changes = q.advance(T0 + timedelta(minutes=10))  # the offer runs out: back in the scan
    assert [c.entry.capture_id for c in changes if c.timed_out] == ["OFFERED"]
    assert [s.entry.capture_id for s in q.ready()] == ["OFFERED", "LATER", "READY"]
    q.set_offer("READY", offer("a2", "r2"), T0)
    assert "READY" not in [s.entry.capture_id for s in q.ready()]
