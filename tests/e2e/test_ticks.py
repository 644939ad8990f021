"""SLA ticks: re-prioritisation over time, SLA transitions once each, held items, offer deadlines."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from iwd_stream.contracts import ResourceOffer


def _order(worker, queue: str) -> list[str]:
    return [i["capture_id"] for i in worker.get(f"/api/queues/acme/{queue}?top=10")["items"]]


def test_a_stepping_item_overtakes_and_a_held_item_is_frozen_and_never_offered(engine):
    worker = engine.worker().start()
    engine.event(
        "create",
        "A",
        fields={"queue": "q", "priority": 10, "attributes": {"boost": True}},
        version=1,
    )
    engine.event("create", "B", fields={"queue": "q", "priority": 50}, version=1)
    engine.event(
        "create",
        "H",
        fields={"queue": "q", "priority": 5, "attributes": {"boost": True}},
        version=1,
    )
    engine.event("hold", "H", version=2)
    engine.flush()
    engine.wait_for(lambda: engine.item("H").get("status") == "held", what="H held")
    engine.wait_for(lambda: len(_order(worker, "q")) == 3, what="three queued")
    first = worker.get("/api/queues/acme/q?top=10")["items"]
    # Exact order by the score at this instant, whether or not A has stepped yet.
    assert [i["score"] for i in first] == sorted((i["score"] for i in first), reverse=True)

    engine.wait_for(lambda: _order(worker, "q")[0] == "A", timeout_s=15, what="A overtakes B")
    top = worker.get("/api/queues/acme/q?top=10")["items"]
    a = next(i for i in top if i["capture_id"] == "A")
    h = next(i for i in top if i["capture_id"] == "H")
    assert a["priority"] >= 60 and "steps" in a["breakdown"][0]["detail"]
    assert h["priority"] == 5 and h["held"]  # frozen: not re-prioritised while held

    assignments = engine.reader(engine.names.assignments)
    engine.capacity("q", credits=5)
    offered = assignments.wait(lambda vs: len(vs) >= 2)
    assert [o["capture_id"] for o in offered] == ["A", "B"]  # exact order, H skipped
    assignments.poll(1.0)
    assert "H" not in {o["capture_id"] for o in assignments.values()}


def test_at_risk_breached_expired_each_recorded_once(engine):
    engine.worker().start()
    now = datetime.now(UTC)
    engine.event(
        "create",
        "S",
        fields={
            "queue": "q",
            "due_at": now + timedelta(seconds=4),  # at risk from due - 2 s
            "expire_at": now + timedelta(seconds=7),
        },
        version=1,
    )
    engine.flush()
    item = engine.wait_for(
        lambda: (i := engine.item("S")).get("status") == "rejected" and i,
        timeout_s=30,
        what="expired",
    )
    assert item["sla_state"] == "expired" and item["reason"] == "expired"
    sla = [h for h in item["history"] if h["event_type"] == "sla" and h["outcome"] == "applied"]
    assert [h["detail"]["sla_state"] for h in sla] == ["at_risk", "breached", "expired"]
    time.sleep(1.5)  # more ticks pass: nothing new is recorded
    assert engine.item("S")["history"] == item["history"]
    assert engine.workers[0].get("/api/queues/acme/q")["depth"] == 0


def test_an_unanswered_offer_requeues_and_is_not_offered_to_that_resource_again(engine):
    worker = engine.worker(offer_timeout_s=2).start()
    engine.event("create", "T", fields={"queue": "q", "priority": 30}, version=1)
    engine.flush()
    engine.wait_for(lambda: engine.item("T").get("status") == "queued", what="queued")
    assignments = engine.reader(engine.names.assignments)

    engine.capacity("q", resource=ResourceOffer(resource_id="r1"))
    first = assignments.wait(lambda vs: len(vs) >= 1)[0]
    assert first["resource_id"] == "r1"
    item = engine.wait_for(
        lambda: (i := engine.item("T")).get("assignment_state") == "timed_out" and i,
        timeout_s=15,
        what="offer timed out",
    )
    assert item["status"] == "queued" and "r1" in item["excluded_resources"]
    assert worker.get("/api/queues/acme/q")["items"][0]["offer"] is None

    engine.capacity("q", resource=ResourceOffer(resource_id="r1"))
    assignments.poll(2.0)
    assert len(assignments.values()) == 1  # r1 declined by silence: not offered T again
    engine.capacity("q", resource=ResourceOffer(resource_id="r2"))
    second = assignments.wait(lambda vs: len(vs) >= 2)[1]
    assert second["capture_id"] == "T" and second["resource_id"] == "r2"
    assert second["assignment_id"] != first["assignment_id"]
