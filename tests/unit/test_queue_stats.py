"""The queue index's running counts equal a scan of the queue after any sequence of changes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from iwd_stream.contracts.models import Offer, QueueEntry, SlaState
from iwd_stream.domain.queue import QueueIndex

T0 = datetime(2024, 1, 1, 9, tzinfo=UTC)


def scan(index: QueueIndex) -> dict[str, int]:
    slots = list(index.ordered())
    out = {state.value: sum(1 for s in slots if s.sla is state) for state in SlaState}
    out.update(
        depth=len(slots),
        offered=sum(1 for s in slots if s.entry.offer is not None),
        held=sum(1 for s in slots if s.entry.held),
    )
    return out


def test_running_counts_match_a_scan_through_random_operations():
    rng = random.Random(3)
    index = QueueIndex()
    now = T0
    for step in range(3000):
        now += timedelta(seconds=rng.randint(0, 120))
        cid = f"c{rng.randint(0, 60)}"
        roll = rng.random()
        if roll < 0.5:
            entry = QueueEntry(
                tenant="t",
                capture_id=cid,
                queue="q",
                priority=rng.randint(0, 100),
                created_at=T0,
                enqueued_at=now - timedelta(seconds=rng.randint(0, 3600)),
                due_at=now + timedelta(seconds=rng.randint(-600, 7200)),
                held=rng.random() < 0.2,
                reprioritization={"at_risk_s": 1800},
            )
            index.upsert(entry, now)
        elif roll < 0.65:
            index.remove(cid)
        elif roll < 0.85 and cid in index:
            offer = None
            if rng.random() < 0.7:
                offer = Offer(
                    assignment_id=f"a{step}",
                    capacity_id="k",
                    offered_at=now,
                    offer_deadline=now + timedelta(seconds=rng.randint(1, 300)),
                )
            index.set_offer(cid, offer, now)
        else:
            index.advance(now)
        assert index.stats() == scan(index), step
        oldest = min((s.entry.enqueued_at for s in index.ordered()), default=None)
        assert index.oldest_enqueued() == oldest, step
