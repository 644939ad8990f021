"""SIGKILL a worker in the middle of a stream, restart it, and check nothing was lost or doubled."""

from __future__ import annotations

import random
import time
from collections import defaultdict

ITEMS = 1000
QUEUES = 4


def _expected_status(i: int) -> set[str]:
    if i % 3 == 0:
        return {"completed"}
    if i % 3 == 1:
        return {"held"}
    return {"queued", "assigned"}  # assigned when a capacity credit reached it


def _send_item_events(engine, indexes: range) -> int:
    sent = 0
    for i in indexes:
        cid = f"K{i:04d}"
        engine.event(
            "create", cid, fields={"queue": f"q{i % QUEUES}", "priority": i % 50}, version=1
        )
        if i % 3 == 0:
            engine.event("complete", cid, version=2)
        elif i % 3 == 1:
            engine.event("hold", cid, version=2)
        else:
            engine.event("update", cid, fields={"priority": 60 + i % 30}, version=2)
            engine.event("update", cid, fields={"business_value": i % 100}, version=3)
        sent += 2 if i % 3 != 2 else 3
        if i % 50 == 0:
            engine.capacity(f"q{i % QUEUES}", credits=3)
            sent += 1
    engine.flush()
    return sent


def test_kill_9_mid_stream_loses_nothing_and_never_doubles_an_offer(engine):
    rng = random.Random(42)
    # Long offer deadline: within this test an offer only ends by a hold or a completion.
    worker = engine.worker("w1", offer_timeout_s=600).start()
    batches = [range(k * ITEMS // 4, (k + 1) * ITEMS // 4) for k in range(4)]
    total = 0
    for n, batch in enumerate(batches):
        total += _send_item_events(engine, batch)
        if n < len(batches) - 1:
            # Kill while the worker is still working through the batch.
            time.sleep(rng.uniform(0.2, 1.5))
            worker.kill()
            started = time.monotonic()
            worker.start()
            print(f"kill -9 #{n + 1}: restarted and ready in {time.monotonic() - started:.1f}s")
    assert total > 2000

    def all_settled():
        for i in range(ITEMS):
            status = engine.item(f"K{i:04d}").get("status")
            if status not in _expected_status(i):
                return False
        return True

    engine.wait_for(all_settled, timeout_s=180, what="every item in its expected status")
    # Offers keep coming while the queues stage catches up: compare once everything is quiet.
    history = engine.reader(engine.names.history)
    assignments = engine.reader(engine.names.assignments)
    engine.wait_for(
        lambda: quiet(history) and quiet(assignments), timeout_s=120, what="the engine to go quiet"
    )
    items = {f"K{i:04d}": engine.item(f"K{i:04d}") for i in range(ITEMS)}
    assert all(item.get("status") in _expected_status(int(cid[1:])) for cid, item in items.items())

    # No history record missing: the history topic holds every seq 1..n of every item, and
    # no seq was ever used for two different transitions.
    trail = defaultdict(dict)
    for record in history.values():
        seq_record = (record["event_id"], record["event_type"], record["outcome"])
        assert trail[record["capture_id"]].setdefault(record["seq"], seq_record) == seq_record, (
            record
        )
    for cid, item in items.items():
        assert set(trail[cid]) == set(range(1, item["seq"] + 1)), (cid, trail[cid], item["seq"])

    # No double dispatch: nobody answered any offer, so an item has at most one live offer.
    # A replayed offer carries the same assignment_id; an offer the queue lost in a crash and
    # replaced is revoked to the routing consumers.
    offered, revoked = defaultdict(set), defaultdict(set)
    for a in assignments.values():
        (offered if a["status"] == "offered" else revoked)[a["capture_id"]].add(a["assignment_id"])
    assert offered, "capacity should have produced offers"
    live = {cid: ids - revoked[cid] for cid, ids in offered.items()}
    assert not {cid: ids for cid, ids in live.items() if len(ids) > 1}
    for cid, item in items.items():
        if item["status"] == "assigned":
            assert live[cid] == {item["assignment_id"]}, (cid, offered[cid], revoked[cid])


def quiet(reader, seconds: float = 3.0) -> bool:
    """True when a reader saw nothing new for ``seconds``."""
    before = len(reader.messages)
    reader.poll(seconds)
    return len(reader.messages) == before
