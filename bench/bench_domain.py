"""Domain benchmark: prints throughput figures; never asserts on time.

    .venv/bin/python bench/bench_domain.py [--items 200000] [--quiet-items 1000000]

Figures: items scored per second (full score with breakdown, and sort key only), next-change
computations per second, ordered-index insert / pop-best rates, the cost of a tick over a
queue of quiet items (and over one where a few are due), dispatch per capacity message, and
lifecycle events applied per second (the workitems stage's domain cost per event).

With a million live objects CPython's cyclic GC dominates allocation-heavy code; the benchmark
does what a worker should do after loading its state: ``gc.collect(); gc.freeze()``.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from iwd_stream.contracts.models import (
    Capacity,
    EventType,
    LifecycleEvent,
    QueueEntry,
    WorkItemFields,
)
from iwd_stream.domain import (
    DEFAULT_WEIGHTS,
    QueueIndex,
    Scorable,
    apply,
    dispatch,
    load_bundled_rules,
)
from iwd_stream.domain.scoring import score_scorable

T0 = datetime(2024, 3, 4, 9, tzinfo=UTC)
POLICY = {
    "step": {"add": 10, "every_s": 900, "max": 100},
    "jumps": [{"within_s": 3600, "priority": 90}],
    "max": 100,
    "at_risk_s": 1800,
}


def entries(n: int, *, quiet: bool = False, seed: int = 1) -> list[QueueEntry]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        created = T0 - timedelta(seconds=rnd.randrange(86_400))
        out.append(
            QueueEntry(
                tenant="bench",
                capture_id=f"INC{i:08d}",
                queue="q",
                priority=rnd.randrange(0, 100),
                business_value=rnd.randrange(0, 100),
                created_at=created,
                enqueued_at=created,
                due_at=None if quiet else created + timedelta(hours=rnd.randrange(1, 48)),
                reprioritization={} if quiet else POLICY,
            )
        )
    return out


def rate(label: str, n: int, fn: Callable[[], object], unit: str = "/s") -> float:
    start = time.perf_counter()
    fn()
    took = time.perf_counter() - start
    per_s = n / took if took > 0 else float("inf")
    print(f"  {label:<52} {per_s:>14,.0f} {unit}   ({n:,} in {took:.3f} s)")
    return per_s


def settle() -> None:
    """Collect garbage and freeze the survivors so the next section times only itself."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


NOW = T0 + timedelta(minutes=40)


def bench_scoring(es: list[QueueEntry]) -> None:
    n = len(es)
    prepared = [Scorable(e) for e in es]
    units = DEFAULT_WEIGHTS.units()
    settle()
    print("scoring")
    rate("items scored (score + breakdown)", n, lambda: [score_scorable(s, NOW) for s in prepared])
    rate("items scored (sort key only)", n, lambda: [s.key_at(NOW, units) for s in prepared])
    rate("next-change computations", n, lambda: [s.next_change(NOW) for s in prepared])
    rate("entries prepared (policy parse + step cap)", n, lambda: [Scorable(e) for e in es])


def bench_index(es: list[QueueEntry]) -> None:
    n = len(es)
    print("ordered index")
    q = QueueIndex()
    rate("inserts (upsert into a growing queue)", n, lambda: [q.upsert(e, NOW) for e in es])
    rate(
        "re-keys (upsert of an existing entry)",
        n // 4,
        lambda: [q.upsert(e, NOW) for e in es[: n // 4]],
    )

    def pop_best(k: int) -> None:
        for _ in range(k):
            best = next(q.ordered())
            q.remove(best.entry.capture_id)

    rate("pops of the best entry", n // 2, lambda: pop_best(n // 2))


def bench_ticks(quiet_items: int) -> None:
    print(f"ticks over {quiet_items:,} quiet items")
    quiet = QueueIndex()
    quiet_entries = entries(quiet_items, quiet=True, seed=2)
    settle()
    rate(
        "inserts of quiet entries",
        quiet_items,
        lambda: [quiet.upsert(e, NOW) for e in quiet_entries],
    )
    settle()
    ticks = 10_000
    start = time.perf_counter()
    for i in range(ticks):
        quiet.advance(NOW + timedelta(seconds=i))
    per_tick = (time.perf_counter() - start) / ticks
    print(f"  {'tick, nothing due':<52} {per_tick * 1e6:>14,.2f} us per tick")
    for e in entries(1_000, seed=3):
        quiet.upsert(e, NOW)
    start = time.perf_counter()
    changes = quiet.advance(NOW + timedelta(hours=2))
    took = time.perf_counter() - start
    print(
        f"  {'tick, 1,000 of them due (re-key + SLA changes)':<52} {took * 1e3:>14,.2f} ms per tick"
        f"   ({len(changes)} SLA changes)"
    )


def bench_dispatch(es: list[QueueEntry]) -> None:
    print(f"dispatch ({len(es):,}-entry queue; offers stay outstanding)")
    dq = QueueIndex()
    for e in es:
        dq.upsert(e, NOW)
    caps = [
        Capacity(capacity_id=f"k{i}", tenant="bench", queue="q", credits=1, occurred_at=NOW)
        for i in range(20_000)
    ]
    settle()
    rate(
        "capacity messages dispatched (1 credit each)",
        len(caps),
        lambda: [dispatch(dq, c, NOW, timedelta(seconds=30)) for c in caps],
    )


def bench_lifecycle() -> None:
    print("lifecycle (workitems stage, bundled ServiceNow rules)")
    rules = load_bundled_rules("servicenow")
    row = {
        "priority": "3 - Moderate",
        "assignment_group": "Group 70",
        "category": "Category 53",
        "impact": "2 - Medium",
        "urgency": "2 - Medium",
        "contact_type": "Phone",
    }
    m = 20_000
    creates = [
        LifecycleEvent(
            type=EventType.CREATE,
            event_id=f"c{i}",
            tenant="servicenow",
            capture_id=f"INC{i}",
            source="bench",
            occurred_at=T0,
            version=0,
            fields=WorkItemFields(attributes=row),
        )
        for i in range(m)
    ]
    updates = [
        LifecycleEvent(
            type=EventType.UPDATE,
            event_id=f"u{i}",
            tenant="servicenow",
            capture_id=f"INC{i}",
            source="bench",
            occurred_at=T0,
            version=1,
            fields=WorkItemFields(attributes={"priority": "2 - High"}),
        )
        for i in range(m)
    ]
    items: list = []
    settle()
    rate(
        "create events applied",
        m,
        lambda: items.extend(apply(None, e, rules, NOW).item for e in creates),
    )
    rate(
        "update events applied (re-prioritised)",
        m,
        lambda: [apply(it, e, rules, NOW) for it, e in zip(items, updates, strict=True)],
    )
    rate(
        "duplicate events recognised",
        m,
        lambda: [apply(it, e, rules, NOW) for it, e in zip(items, creates, strict=True)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--quiet-items", type=int, default=1_000_000)
    args = parser.parse_args()
    print(
        f"iwd-stream domain benchmark: Python {platform.python_version()} on {platform.machine()}"
    )
    es = entries(args.items)
    bench_scoring(es)
    settle()
    bench_index(es)
    settle()
    bench_ticks(args.quiet_items)
    settle()
    bench_dispatch(es[:100_000])
    settle()
    bench_lifecycle()


if __name__ == "__main__":
    main()
