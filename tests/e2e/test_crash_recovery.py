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

    items = {f"K{i:04d}": engine.item(f"K{i:04d}") for i in range(ITEMS)}
    # No history record missing: the history topic holds every seq 1..n of every item.
    history = engine.reader(engine.names.history)
    expected_records = sum(item["seq"] for item in items.values())
    records = history.wait(
        lambda vs: len({(v["capture_id"], v["seq"]) for v in vs}) >= expected_records, timeout_s=60
    )
    seqs = defaultdict(set)
    trail = defaultdict(list)
    for record in records:
        seqs[record["capture_id"]].add(record["seq"])
        trail[record["capture_id"]].append(
            (record["seq"], record["event_type"], record["outcome"], record.get("reason"))
        )
    bad = [cid for cid, item in items.items() if seqs[cid] != set(range(1, item["seq"] + 1))]
    if bad:
        import orjson as _o

        cl = engine.reader(f"{engine.prefix}-engine-workitems-changelog")
        cl.poll(5.0)
        for k, v in cl.messages:
            if k and k.decode().endswith(bad[0]):
                env = _o.loads(v) if v else None
                print("CHANGELOG", k, env and env["item"]["seq"], env and env["item"]["status"])
        print("WORKER LOG", engine.workers[0].log_file)
        import shutil

        shutil.copy(engine.workers[0].log_file, "/tmp/crash-worker.log")
    for cid, item in items.items():
        assert seqs[cid] == set(range(1, item["seq"] + 1)), (cid, trail[cid], item["history"])

    # No double dispatch: nobody answered any offer, so an item was offered at most once
    # (a replayed offer after a crash carries the same assignment_id).
    offers = defaultdict(set)
    for a in engine.reader(engine.names.assignments).poll(3.0):
        if a["status"] == "offered":
            offers[a["capture_id"]].add(a["assignment_id"])
    assert offers, "capacity should have produced offers"
    doubled = {cid: ids for cid, ids in offers.items() if len(ids) > 1}
    assert not doubled
    for cid, item in items.items():
        if item["status"] == "assigned":
            assert item["assignment_id"] in offers[cid]
