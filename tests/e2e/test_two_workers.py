"""Two workers share the partitions; when one stops, the other carries on in exact order."""

from __future__ import annotations

from iwd_stream.contracts import queue_key
from iwd_stream.kafka.producer import murmur2_partition

QUEUES = [f"q{n}" for n in range(6)]


def _order(worker, queue: str) -> list[str]:
    body = worker.get(f"/api/queues/acme/{queue}?top=50")
    if "items" not in body:
        # While partitions move, a forwarded question can find its owner gone: 503, retry.
        assert body.get("_status") == 503, body
        return None
    return [i["capture_id"] for i in body["items"]]


def test_partitions_move_to_the_survivor_and_order_and_offers_continue(engine):
    w1 = engine.worker("w1", offer_timeout_s=600).start()
    w2 = engine.worker("w2", offer_timeout_s=600).start()
    engine.wait_for(
        lambda: w1.get("/ready").get("ready") and w2.get("/ready").get("ready"), what="both ready"
    )
    # The queues really are spread over partitions (and so over both workers).
    assert (
        len({murmur2_partition(queue_key("acme", q).encode(), engine.partitions) for q in QUEUES})
        > 1
    )

    expected: dict[str, list[str]] = {}
    for q in QUEUES:
        for p in (10, 70, 40, 90, 20):
            engine.event("create", f"{q}-p{p}", fields={"queue": q, "priority": p}, version=1)
        expected[q] = [f"{q}-p{p}" for p in (90, 70, 40, 20, 10)]
    engine.flush()

    # Any worker answers any question: both see every queue in exact order.
    for w in (w1, w2):
        for q in QUEUES:
            engine.wait_for(lambda w=w, q=q: _order(w, q) == expected[q], what=f"{q} via {w.name}")
    summaries = w1.get("/api/queues?tenant=acme")["queues"]
    assert sorted(s["queue"] for s in summaries) == QUEUES

    assignments = engine.reader(engine.names.assignments)
    for q in QUEUES:
        engine.capacity(q, credits=1)
    first = assignments.wait(lambda vs: len(vs) >= len(QUEUES))
    assert sorted(a["capture_id"] for a in first) == sorted(expected[q][0] for q in QUEUES)

    assert w2.stop() == 0  # SIGTERM: a clean stop
    engine.wait_for(lambda: w1.get("/ready").get("ready"), what="w1 ready after rebalance")
    for q in QUEUES:
        engine.wait_for(lambda q=q: _order(w1, q) == expected[q], what=f"{q} on the survivor")
        engine.event("create", f"{q}-p80", fields={"queue": q, "priority": 80}, version=1)
    engine.flush()
    for q in QUEUES:
        with_p80 = [expected[q][0], f"{q}-p80", *expected[q][1:]]
        engine.wait_for(lambda q=q, o=with_p80: _order(w1, q) == o, what=f"{q}-p80 queued")
        engine.capacity(q, credits=1)
    offered = assignments.wait(lambda vs: len(vs) >= 2 * len(QUEUES))[len(QUEUES) :]
    # The next best after the offered p90 is the new p80 in every queue; nothing offered twice.
    assert sorted(a["capture_id"] for a in offered) == sorted(f"{q}-p80" for q in QUEUES)
    ids = [a["assignment_id"] for a in assignments.values()]
    assert len(ids) == len(set(ids))
