"""A work item's whole life through real worker processes on a real broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from iwd_stream.contracts import AssignmentResponse, ResourceOffer, ResponseOutcome, item_key


def test_create_offer_accept_complete_with_history(engine):
    worker = engine.worker().start()
    engine.event("create", "C1", fields={"queue": "q1", "priority": 20}, version=1)
    engine.flush()
    engine.wait_for(lambda: engine.item("C1").get("status") == "queued", what="C1 queued")

    assignments = engine.reader(engine.names.assignments)
    engine.capacity("q1", resource=ResourceOffer(resource_id="r1"))
    offer = assignments.wait(lambda vs: any(v["capture_id"] == "C1" for v in vs))[-1]
    assert offer["resource_id"] == "r1" and offer["status"] == "offered"
    assert {t["name"] for t in offer["breakdown"]} >= {"priority", "business_value", "sla", "age"}
    engine.wait_for(lambda: engine.item("C1").get("assignment_state") == "offered", what="offered")
    assert engine.item("C1")["status"] == "assigned"

    response = AssignmentResponse(
        response_id=f"resp-{uuid.uuid4().hex[:8]}",
        assignment_id=offer["assignment_id"],
        tenant="acme",
        capture_id="C1",
        queue="q1",
        resource_id="r1",
        outcome=ResponseOutcome.ACCEPTED,
        occurred_at=datetime.now(UTC),
    )
    engine.send(engine.names.responses, item_key("acme", "C1"), response)
    engine.flush()
    engine.wait_for(
        lambda: engine.item("C1").get("assignment_state") == "accepted", what="accepted"
    )

    engine.event("complete", "C1", version=2)
    engine.flush()
    item = engine.wait_for(
        lambda: (i := engine.item("C1")).get("status") == "completed" and i, what="completed"
    )
    steps = [(h["event_type"], h["to_status"], h["assignment_state"]) for h in item["history"]]
    assert steps == [
        ("create", "queued", "none"),
        ("assigned", "assigned", "offered"),
        ("response.accepted", "assigned", "accepted"),
        ("complete", "completed", "accepted"),
    ]
    history = engine.reader(engine.names.history).wait(lambda vs: len(vs) >= 4)
    assert [h["seq"] for h in history if h["capture_id"] == "C1"] == [1, 2, 3, 4]
    # The accepted item left the queue; the queue is empty again.
    top = worker.get("/api/queues/acme/q1?top=5")
    assert top["depth"] == 0


def test_capacity_that_arrives_before_the_work_waits_for_it(engine):
    worker = engine.worker().start()
    assignments = engine.reader(engine.names.assignments)
    engine.capacity("q2", resource=ResourceOffer(resource_id="r-fr", skills=["fr"]))
    engine.capacity(
        "q2", resource=ResourceOffer(resource_id="r-en", skills=["en"], slots=2), credits=2
    )
    engine.wait_for(
        lambda: any(s["standing_capacity"] == 3 for s in worker.get("/api/queues")["queues"]),
        what="3 credits standing",
    )
    engine.event("create", "E1", fields={"queue": "q2", "skills": ["en"]}, version=1)
    engine.event("create", "F1", fields={"queue": "q2", "skills": ["fr"]}, version=1)
    engine.event("create", "E2", fields={"queue": "q2", "skills": ["en"]}, version=1)
    engine.event("create", "E3", fields={"queue": "q2", "skills": ["en"]}, version=1)
    engine.flush()
    offers = assignments.wait(lambda vs: len(vs) >= 3)
    assignments.poll(1.5)
    got = {a["capture_id"]: a["resource_id"] for a in assignments.values()}
    # Each standing credit is used once, by a matching item; the third "en" item waits.
    assert got.pop("F1") == "r-fr", offers
    assert len(got) == 2 and set(got.values()) == {"r-en"} and set(got) < {"E1", "E2", "E3"}
    summary = next(s for s in worker.get("/api/queues")["queues"] if s["queue"] == "q2")
    assert summary["standing_capacity"] == 0 and summary["offered"] == 3
