"""Routing-consumer simulator: the reference client of ``iwd.assignments`` / ``iwd.assignment.responses``.

Simulated employees publish capacity (one ``Capacity`` per free slot, naming the employee),
answer each offer made to them (accept; sometimes decline with a reason; optionally ignore it
so it times out), work an accepted item for a drawn handle time divided by ``speed``, then
publish a ``complete`` lifecycle event for it and a fresh capacity. :class:`Workforce` holds
the decisions and is pure (give it ``now``); :func:`run_simulator` is the thin Kafka loop.
Every decision is drawn from ``Random(f"{seed}:{assignment_id}")``: the same offer gets the
same answer whatever the arrival order.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer

from iwd_stream.connectors.output import ProducerLike, Sender
from iwd_stream.contracts.codec import decode
from iwd_stream.contracts.models import (
    Assignment,
    AssignmentResponse,
    Capacity,
    Contract,
    EventType,
    LifecycleEvent,
    ResourceOffer,
    ResponseOutcome,
    item_key,
    queue_key,
)
from iwd_stream.errors import DecodeError
from iwd_stream.topics import TopicNames

DECLINE_REASONS = ("busy with a call", "missing skill", "end of shift")


@dataclass(frozen=True)
class Employee:
    """One simulated resource serving one queue of one tenant."""

    resource_id: str
    tenant: str
    queue: str
    skills: tuple[str, ...] = ()
    media_types: tuple[str, ...] = ()
    capacity: int = 1
    handle_time_s: float = 900.0  # mean handle time, in source (uncompressed) seconds
    decline_rate: float = 0.05
    ignore_rate: float = 0.0


def draw_employees(
    tenant: str,
    queues: Sequence[str],
    count: int,
    *,
    seed: int = 7,
    skills: Sequence[str] = (),
    media_types: Sequence[str] = (),
    handle_time_s: tuple[float, float] = (600.0, 2400.0),
    decline_rate: float = 0.05,
    ignore_rate: float = 0.02,
) -> list[Employee]:
    """Draw ``count`` employees spread over ``queues`` (deterministic for a seed)."""
    rng = random.Random(seed)
    staff = []
    for n in range(count):
        own_skills = (
            tuple(sorted(rng.sample(list(skills), k=rng.randint(1, len(skills))))) if skills else ()
        )
        staff.append(
            Employee(
                resource_id=f"{tenant}-emp-{n + 1:03d}",
                tenant=tenant,
                queue=queues[n % len(queues)],
                skills=own_skills,
                media_types=tuple(media_types),
                capacity=rng.choice((1, 1, 2)),
                handle_time_s=rng.uniform(*handle_time_s),
                decline_rate=decline_rate,
                ignore_rate=ignore_rate,
            )
        )
    return staff


Out = tuple[str, str, Contract]  # topic, key, message


@dataclass
class Workforce:
    """The employees' decisions, without Kafka: messages in, messages (and timers) out."""

    employees: Sequence[Employee]
    topics: TopicNames
    speed: float = 60.0
    seed: int = 7
    run: str = "run"  # tags capacity ids, so offers made to an earlier run are not taken
    stats: Counter[str] = field(default_factory=Counter)
    _by_id: dict[str, Employee] = field(init=False, default_factory=dict)
    _timers: list[tuple[datetime, int, str, str]] = field(init=False, default_factory=list)
    _seq: int = field(init=False, default=0)
    _offers: dict[str, Assignment] = field(init=False, default_factory=dict)
    _capacity_n: Counter[str] = field(init=False, default_factory=Counter)
    _issued: set[str] = field(init=False, default_factory=set)
    _revoked: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self._by_id = {e.resource_id: e for e in self.employees}

    def start(self, now: datetime) -> list[Out]:
        """Publish one capacity per free slot of every employee."""
        return [self._capacity(e, now) for e in self.employees for _ in range(e.capacity)]

    def on_assignment(self, offer: Assignment, now: datetime) -> list[Out]:
        """Answer an offer made to one of our employees; ignore offers to anyone else."""
        emp = self._by_id.get(offer.resource_id or "")
        if emp is None or offer.tenant != emp.tenant:
            return []
        if offer.status == "revoked":
            return self._on_revoked(offer, emp, now)
        if offer.assignment_id in self._offers:
            return []
        # The engine gives a revoked offer's capacity to the next item under a derived id.
        if offer.capacity_id.split(":returned:")[0] not in self._issued:
            return []  # an offer for capacity this run never published
        self._offers[offer.assignment_id] = offer
        self.stats["offers"] += 1
        rng = random.Random(f"{self.seed}:{offer.assignment_id}")
        roll = rng.random()
        if roll < emp.ignore_rate:
            # Say nothing: the engine times the offer out; the slot is free again afterwards.
            self.stats["ignored"] += 1
            self._at(max(offer.offer_deadline, now), "capacity", emp.resource_id)
            return []
        if roll < emp.ignore_rate + emp.decline_rate:
            self.stats["declined"] += 1
            self._at(now + timedelta(seconds=1), "capacity", emp.resource_id)
            return [
                self._response(offer, ResponseOutcome.DECLINED, rng.choice(DECLINE_REASONS), now)
            ]
        self.stats["accepted"] += 1
        handle_s = rng.expovariate(1.0 / emp.handle_time_s)
        self._at(now + timedelta(seconds=handle_s / self.speed), "complete", offer.assignment_id)
        return [self._response(offer, ResponseOutcome.ACCEPTED, None, now)]

    def _on_revoked(self, notice: Assignment, emp: Employee, now: datetime) -> list[Out]:
        """The item ended or was held at the source while offered: drop the work, if any.

        The engine has already given that capacity to the next item (an offer on a
        ``:returned:`` capacity id); if the queue had none, the slot frees at the deadline.
        """
        offer = self._offers.get(notice.assignment_id)
        if offer is None or notice.assignment_id in self._revoked:
            return []
        self._revoked.add(notice.assignment_id)
        self.stats["revoked"] += 1
        self._at(max(offer.offer_deadline, now), "capacity", emp.resource_id)
        return []

    def next_due(self) -> datetime | None:
        """Return when the next timer fires, if any."""
        return self._timers[0][0] if self._timers else None

    def tick(self, now: datetime) -> list[Out]:
        """Fire due timers: completions (complete event + new capacity) and freed slots."""
        out: list[Out] = []
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, ref = heapq.heappop(self._timers)
            if kind == "capacity":
                out.append(self._capacity(self._by_id[ref], now))
                continue
            if ref in self._revoked:
                continue  # revoked while being worked
            offer = self._offers[ref]
            emp = self._by_id[offer.resource_id or ""]
            self.stats["completed"] += 1
            event = LifecycleEvent(
                type=EventType.COMPLETE,
                event_id=f"simulator:{offer.assignment_id}:complete",
                tenant=offer.tenant,
                capture_id=offer.capture_id,
                source="simulator",
                occurred_at=now,
                reason=f"handled by {emp.resource_id}",
            )
            out.append((self.topics.events, item_key(offer.tenant, offer.capture_id), event))
            out.append(self._capacity(emp, now))
        return out

    def _at(self, when: datetime, kind: str, ref: str) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, kind, ref))

    def _capacity(self, emp: Employee, now: datetime) -> Out:
        self._capacity_n[emp.resource_id] += 1
        self.stats["capacity"] += 1
        capacity_id = f"{emp.resource_id}:{self.run}:{self._capacity_n[emp.resource_id]}"
        self._issued.add(capacity_id)
        message = Capacity(
            capacity_id=capacity_id,
            tenant=emp.tenant,
            queue=emp.queue,
            credits=1,
            resource=ResourceOffer(
                resource_id=emp.resource_id,
                skills=list(emp.skills),
                media_types=list(emp.media_types),
                slots=1,
            ),
            occurred_at=now,
        )
        return (self.topics.capacity, queue_key(emp.tenant, emp.queue), message)

    def _response(
        self, offer: Assignment, outcome: ResponseOutcome, reason: str | None, now: datetime
    ) -> Out:
        message = AssignmentResponse(
            response_id=f"{offer.assignment_id}:{outcome.value}",
            assignment_id=offer.assignment_id,
            tenant=offer.tenant,
            capture_id=offer.capture_id,
            queue=offer.queue,
            resource_id=offer.resource_id,
            outcome=outcome,
            reason=reason,
            occurred_at=now,
        )
        return (self.topics.responses, item_key(offer.tenant, offer.capture_id), message)


def run_simulator(
    bootstrap_servers: str,
    producer: ProducerLike,
    topics: TopicNames,
    employees: Sequence[Employee],
    *,
    speed: float = 60.0,
    seed: int = 7,
    group_id: str = "iwd-simulator",
    run: str | None = None,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Counter[str]:
    """Run the employees against Kafka until ``stop`` or ``duration_s``; return their counts."""
    workforce = Workforce(
        employees, topics, speed=speed, seed=seed, run=run or f"{time.time_ns():x}"
    )
    sender = Sender(producer)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            # From the beginning: an offer can be made before our partitions are assigned;
            # offers for capacity of earlier runs are recognised by capacity_id and skipped.
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topics.assignments])
    ends = None if duration_s is None else time.monotonic() + duration_s

    def send(outs: list[Out]) -> None:
        for topic, key, message in outs:
            sender.send(topic, key, message)

    try:
        send(workforce.start(now()))
        sender.flush()
        while not (stop is not None and stop.is_set()) and (
            ends is None or time.monotonic() < ends
        ):
            due = workforce.next_due()
            wait = 0.2 if due is None else min(0.2, max(0.0, (due - now()).total_seconds()))
            batch = consumer.consume(num_messages=200, timeout=wait)
            for msg in batch:
                if msg.error() is not None:
                    continue
                try:
                    offer = decode(msg.value(), Assignment)
                except DecodeError:
                    workforce.stats["undecodable"] += 1
                    continue
                send(workforce.on_assignment(offer, now()))
            send(workforce.tick(now()))
            if any(m.error() is None for m in batch):
                # Answers are on Kafka before the offers are marked read.
                sender.flush()
                consumer.commit(asynchronous=False)
            else:
                producer.poll(0)
        sender.flush()
    finally:
        consumer.close()
    return workforce.stats
