"""Hypothesis properties of the lifecycle, the queue order and the dispatch policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from domain_fixtures import RULES, T0, assigned, ev, response, sla
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iwd_stream.contracts.models import (
    FINAL_STATUSES,
    AssignmentResponse,
    Capacity,
    EventType,
    LifecycleEvent,
    QueueCommandOp,
    QueueEntry,
    ResourceOffer,
    ResponseOutcome,
    SlaState,
    WorkItem,
)
from iwd_stream.domain import QueueIndex, apply, dispatch, offers_wanted, sla_event
from iwd_stream.domain.workitem import assigned_event

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CATEGORIES = st.sampled_from(["billing", "sales", None])


@st.composite
def field_patches(draw: st.DrawFn) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    if draw(st.booleans()):
        patch["priority"] = draw(st.integers(0, 100))
    if draw(st.booleans()):
        patch["category"] = draw(CATEGORIES)
    if draw(st.booleans()):
        patch["business_value"] = draw(st.integers(0, 100))
    if draw(st.booleans()):
        patch["attributes"] = draw(
            st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=2)
        )
    return patch


@st.composite
def versioned_histories(draw: st.DrawFn) -> list[LifecycleEvent]:
    """A source's events for one item, versions 1..n; a final event, if any, comes last.

    ``restart`` is left out on purpose: it resets engine state (exclusions, age) as of the
    moment it lands, which is order-sensitive by design.
    """
    n = draw(st.integers(1, 8))
    events = []
    for i in range(n):
        last = i == n - 1
        kinds = ["create", "update", "hold", "resume"] + (["complete", "cancel"] if last else [])
        kind = "create" if i == 0 and draw(st.booleans()) else draw(st.sampled_from(kinds))
        events.append(ev(kind, i + 1, at=T0 + timedelta(minutes=i), **draw(field_patches())))
    return events


def view(item: WorkItem | None) -> Any:
    assert item is not None
    return (
        item.status,
        item.claim,
        item.source,
        item.fields,
        item.field_stamps,
        item.sla_state,
        item.in_queue,
        item.created_at,
        item.reason,
    )


def run_all(events: list[Any]) -> WorkItem | None:
    item = None
    for e in events:
        item = apply(item, e, RULES, T0).item
    return item


@FAST
@given(versioned_histories(), st.data())
def test_any_arrival_order_ends_like_version_order(
    events: list[LifecycleEvent], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(events))
    assert view(run_all(shuffled)) == view(run_all(events))


@FAST
@given(versioned_histories(), st.data())
def test_applying_an_event_twice_is_applying_it_once(
    events: list[LifecycleEvent], data: st.DataObject
) -> None:
    doubled = data.draw(st.sets(st.integers(0, len(events) - 1)))
    with_dupes: list[Any] = []
    for i, e in enumerate(events):
        with_dupes += [e, e] if i in doubled else [e]
    assert run_all(with_dupes) == run_all(events)


ENGINE = st.sampled_from(["assigned", "accept", "decline", "timeout", "sla"])


@st.composite
def mixed_histories(draw: st.DrawFn) -> list[Any]:
    out: list[Any] = [ev("create", 1, category=draw(st.sampled_from(["billing", None])))]
    version = 1
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            version += 1
            kind = draw(
                st.sampled_from(["update", "hold", "resume", "complete", "cancel", "restart"])
            )
            out.append(ev(kind, version, **draw(field_patches())))
        else:
            kind = draw(ENGINE)
            aid = draw(st.sampled_from(["a1", "a2"]))
            if kind == "assigned":
                out.append(assigned(aid))
            elif kind == "sla":
                out.append(sla(SlaState.EXPIRED, T0 + timedelta(days=draw(st.integers(0, 2)))))
            else:
                outcome = {"accept": "accepted", "decline": "declined", "timeout": "timed_out"}[
                    kind
                ]
                out.append(response(outcome, aid))
    return out


@FAST
@given(mixed_histories())
def test_final_statuses_absorb(events: list[Any]) -> None:
    item = None
    final = None
    for e in events:
        out = apply(item, e, RULES, T0)
        item = out.item
        assert item is not None
        if final is not None:
            assert item.status is final
            # Nothing can put a finished item back in a queue; a stray offer is only taken out.
            assert all(c.op is QueueCommandOp.REMOVE for c in out.commands)
        elif item.status in FINAL_STATUSES:
            final = item.status


@FAST
@given(mixed_histories())
def test_an_item_has_at_most_one_live_offer_and_held_items_take_none(events: list[Any]) -> None:
    item = None
    for e in events:
        before = item
        out = apply(item, e, RULES, T0)
        item = out.item
        assert item is not None
        is_offer = isinstance(e, LifecycleEvent) and e.type is EventType.ASSIGNED
        if is_offer and before is not None and item.assignment_id != before.assignment_id:
            # A new offer is recorded only for a queued item, or in place of a live offer the
            # queue no longer holds, which is then recorded as superseded: never two at once.
            assert before.status.value == "queued" or (
                before.assignment_state.value == "offered"
                and out.history[0].detail.get("superseded") == before.assignment_id
            )
        if item.status.value == "held":
            assert item.assignment_state.value not in ("offered", "accepted")


# --- queue order -----------------------------------------------------------------------------


@st.composite
def entries(draw: st.DrawFn, max_size: int = 25) -> list[QueueEntry]:
    n = draw(st.integers(0, max_size))
    out = []
    for i in range(n):
        due = draw(st.none() | st.integers(-120, 600))
        out.append(
            QueueEntry(
                tenant="t",
                capture_id=f"C{i}",
                queue="q",
                priority=draw(st.integers(0, 5)) * 10,
                business_value=draw(st.sampled_from([0, 10])),
                created_at=T0 - timedelta(minutes=draw(st.sampled_from([0, 30, 90]))),
                enqueued_at=T0,
                due_at=T0 + timedelta(minutes=due) if due is not None else None,
                held=draw(st.booleans()) and draw(st.booleans()),
                skills=draw(st.sampled_from([[], ["fr"], ["en"], ["fr", "en"]])),
                media_type=draw(st.sampled_from([None, "voice", "chat"])),
                excluded_resources=draw(st.sampled_from([[], ["r1"], ["r2"]])),
                reprioritization=draw(
                    st.sampled_from(
                        [{}, {"step": {"add": 10, "every_s": 900, "max": 60}, "at_risk_s": 1800}]
                    )
                ),
            )
        )
    return out


@FAST
@given(entries(), st.data())
def test_order_is_total_stable_and_independent_of_insertion_order(
    es: list[QueueEntry], data: st.DataObject
) -> None:
    now = T0 + timedelta(minutes=data.draw(st.integers(0, 120)))
    a, b = QueueIndex(), QueueIndex()
    for e in es:
        a.upsert(e, now)
    for e in data.draw(st.permutations(es)):
        b.upsert(e, now)
    order_a = [s.entry.capture_id for s in a.ordered()]
    assert order_a == [s.entry.capture_id for s in b.ordered()]
    keys = [s.key for s in a.ordered()]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # strict: no two items tie
    for e in es:  # re-upserting unchanged entries moves nothing
        a.upsert(e, now)
    assert [s.entry.capture_id for s in a.ordered()] == order_a


@FAST
@given(entries(), st.integers(0, 180))
def test_incremental_advance_matches_a_fresh_index(es: list[QueueEntry], minutes: int) -> None:
    later = T0 + timedelta(minutes=minutes)
    live = QueueIndex()
    for e in es:
        live.upsert(e, T0)
    for m in range(0, minutes + 1, 7):
        live.advance(T0 + timedelta(minutes=m))
    live.advance(later)
    fresh = QueueIndex()
    for e in es:
        fresh.upsert(e, later)
    assert [s.entry.capture_id for s in live.ordered() if not s.entry.held] == [
        s.entry.capture_id for s in fresh.ordered() if not s.entry.held
    ]


RESOURCES = st.none() | st.builds(
    ResourceOffer,
    resource_id=st.sampled_from(["r1", "r2", "r3"]),
    skills=st.sampled_from([[], ["fr"], ["en", "fr"]]),
    media_types=st.sampled_from([[], ["voice"], ["chat", "voice"]]),
    slots=st.integers(1, 4),
)


@FAST
@given(entries(), st.lists(st.tuples(st.integers(1, 6), RESOURCES), min_size=1, max_size=6))
def test_dispatch_respects_capacity_never_offers_twice_nor_held(
    es: list[QueueEntry], capacities: list[tuple[int, ResourceOffer | None]]
) -> None:
    q = QueueIndex()
    for e in es:
        q.upsert(e, T0)
    offered: set[str] = set()
    for i, (credits, resource) in enumerate(capacities):
        cap = Capacity(
            capacity_id=f"k{i}",
            tenant="t",
            queue="q",
            credits=credits,
            resource=resource,
            occurred_at=T0,
        )
        result = dispatch(q, cap, T0, timedelta(seconds=30))
        ids = [a.capture_id for a in result.assignments]
        assert len(ids) <= offers_wanted(cap)
        assert not offered & set(ids) and len(set(ids)) == len(ids)
        offered |= set(ids)
        by_id = {e.capture_id: e for e in es}
        for cid in ids:
            e = by_id[cid]
            assert not e.held
            if resource is not None:
                assert resource.resource_id not in e.excluded_resources
                assert set(e.skills) <= set(resource.skills)
        # The best eligible item was taken first: nothing skipped outranks what was chosen.
        if ids:
            order = [s.entry.capture_id for s in q.ordered()]
            assert [order.index(c) for c in ids] == sorted(order.index(c) for c in ids)


@FAST
@given(
    st.lists(st.sampled_from(["r1", "r2", "r3"]), min_size=1, max_size=8),
    st.lists(st.sampled_from(["declined", "timed_out"]), min_size=8, max_size=8),
)
def test_a_resource_that_declined_is_never_offered_the_item_again(
    resources: list[str], answers: list[str]
) -> None:
    """Workitems stage and queues stage wired by hand: apply -> commands -> index -> dispatch."""
    out = apply(None, ev("create", 1, capture_id="C1", category="billing"), RULES, T0)
    item = out.item
    q = QueueIndex()
    for c in out.commands:
        q.apply(c, T0)
    declined: set[str] = set()
    for i, (resource, answer) in enumerate(zip(resources, answers, strict=False)):
        cap = Capacity(
            capacity_id=f"k{i}",
            tenant="acme",
            queue="billing",
            resource=ResourceOffer(resource_id=resource),
            occurred_at=T0,
        )
        result = dispatch(q, cap, T0, timedelta(seconds=30))
        if resource in declined:
            assert result.assignments == ()
            continue
        assert len(result.assignments) == 1
        a = result.assignments[0]
        out = apply(
            item,
            assigned_event(
                "acme", "C1", a.assignment_id, "billing", resource, a.offer_deadline, a.score, T0
            ),
            RULES,
            T0,
        )
        item = out.item
        resp = AssignmentResponse(
            response_id=f"resp{i}",
            assignment_id=a.assignment_id,
            tenant="acme",
            capture_id="C1",
            queue="billing",
            resource_id=resource,
            outcome=ResponseOutcome(answer),
            occurred_at=T0,
        )
        out = apply(item, resp, RULES, T0)
        item = out.item
        for c in out.commands:
            q.apply(c, T0)
        declined.add(resource)
    assert item is not None and set(item.excluded_resources) == declined


def test_sla_event_builder_round_trips_through_apply() -> None:
    item = run_all([ev("create", 1, category="billing")])
    out = apply(
        item, sla_event("acme", "C1", SlaState.BREACHED, T0 + timedelta(hours=5)), RULES, T0
    )
    assert out.item is not None and out.item.sla_state is SlaState.BREACHED
