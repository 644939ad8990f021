"""The routing-consumer simulator's decisions, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from iwd_stream.connectors.simulator import Employee, Workforce, draw_employees
from iwd_stream.contracts.models import (
    Assignment,
    AssignmentResponse,
    Capacity,
    LifecycleEvent,
    SlaState,
)
from iwd_stream.topics import TopicNames

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
TOPICS = TopicNames("t")


def offer(workforce: Workforce, capacity: Capacity, capture_id: str, n: int) -> Assignment:
    assert capacity.resource is not None
    return Assignment(
        assignment_id=f"a-{n}",
        capacity_id=capacity.capacity_id,
        tenant=capacity.tenant,
        queue=capacity.queue,
        capture_id=capture_id,
        resource_id=capacity.resource.resource_id,
        offered_at=T0,
        offer_deadline=T0 + timedelta(seconds=30),
        score=1.0,
        breakdown=[],
        priority=1,
        business_value=0,
        sla_state=SlaState.ON_TRACK,
    )


def run(seed: int) -> list[tuple[str, str, str]]:
    staff = [
        Employee(
            "e1", "acme", "q1", capacity=2, handle_time_s=600, decline_rate=0.3, ignore_rate=0.2
        )
    ]
    wf = Workforce(staff, TOPICS, speed=60, seed=seed)
    log = []
    caps = [m for _, _, m in wf.start(T0)]
    assert [c.capacity_id for c in caps] == ["e1:run:1", "e1:run:2"]  # type: ignore[attr-defined]
    now = T0
    for n in range(40):
        cap = caps.pop(0)
        assert isinstance(cap, Capacity)
        for topic, key, msg in wf.on_assignment(offer(wf, cap, f"INC{n}", n), now):
            log.append((topic, key, msg.model_dump_json()))
        while not caps:
            due = wf.next_due()
            assert due is not None
            now = max(now, due)
            for topic, key, msg in wf.tick(now):
                log.append((topic, key, msg.model_dump_json()))
                if isinstance(msg, Capacity):
                    caps.append(msg)
    return log


def test_same_seed_same_answers_and_all_outcomes_happen() -> None:
    assert run(1) == run(1)
    assert run(1) != run(2)
    log = run(1)
    responses = [
        AssignmentResponse.model_validate_json(v) for t, _, v in log if t == TOPICS.responses
    ]
    outcomes = {r.outcome for r in responses}
    assert outcomes == {"accepted", "declined"}
    assert all(r.reason for r in responses if r.outcome == "declined")
    completes = [LifecycleEvent.model_validate_json(v) for t, _, v in log if t == TOPICS.events]
    accepted = {r.capture_id for r in responses if r.outcome == "accepted"}
    assert {c.capture_id for c in completes} <= accepted and completes
    assert all(
        k == f"acme/{c.capture_id}"
        for (t, k, _), c in zip([x for x in log if x[0] == TOPICS.events], completes, strict=True)
    )
    assert len(responses) < 40  # some offers were ignored (left to time out)


def test_offers_for_other_resources_or_runs_are_ignored() -> None:
    wf = Workforce([Employee("e1", "acme", "q1")], TOPICS)
    [(_, key, cap)] = wf.start(T0)
    assert key == "acme/q1" and isinstance(cap, Capacity)
    other = offer(wf, cap, "X", 1).model_copy(update={"resource_id": "e9"})
    stale = offer(wf, cap, "X", 2).model_copy(update={"capacity_id": "e1:old:1"})
    assert wf.on_assignment(other, T0) == [] and wf.on_assignment(stale, T0) == []


def test_draw_employees_is_deterministic() -> None:
    a = draw_employees("acme", ["q1", "q2"], 5, seed=3, skills=["net", "db"])
    assert a == draw_employees("acme", ["q1", "q2"], 5, seed=3, skills=["net", "db"])
    assert [e.queue for e in a] == ["q1", "q2", "q1", "q2", "q1"]


def test_a_revoked_offer_is_not_completed_and_returned_capacity_is_taken():
    staff = [
        Employee("e1", "acme", "q1", capacity=1, handle_time_s=60, decline_rate=0, ignore_rate=0)
    ]
    wf = Workforce(staff, TOPICS, speed=1, seed=1)
    ((_, _, cap),) = wf.start(T0)
    assert isinstance(cap, Capacity)
    first = offer(wf, cap, "INC1", 1)
    assert [type(m).__name__ for _, _, m in wf.on_assignment(first, T0)] == ["AssignmentResponse"]

    revoked = first.model_copy(update={"status": "revoked"})
    assert wf.on_assignment(revoked, T0) == []
    assert wf.on_assignment(revoked, T0) == []  # a repeated notice changes nothing
    # The engine re-offers the freed capacity under a derived id: the employee takes it.
    returned = offer(
        wf, cap.model_copy(update={"capacity_id": f"{cap.capacity_id}:returned:a-1"}), "INC2", 2
    )
    assert len(wf.on_assignment(returned, T0)) == 1
    later = wf.tick(T0 + timedelta(hours=1))
    completed = [m.capture_id for _, _, m in later if isinstance(m, LifecycleEvent)]
    assert completed == ["INC2"]  # never the revoked INC1
    assert wf.stats["revoked"] == 1
