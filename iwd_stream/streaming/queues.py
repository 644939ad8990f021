"""The queues stage's processor: queue entries, their order, SLA clocks and dispatch.

No Faust here. The agent passes each raw message in and gets back the table writes and the
messages to send (:class:`Result`). The entries (with their live offers) are durable in the
changelog-backed table; the ordered index and timeline of each queue
(:class:`~iwd_stream.domain.queue.QueueIndex`) are in memory and rebuilt from the table after
recovery and after every partition assignment.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from iwd_stream.contracts import (
    Assignment,
    AssignmentState,
    Capacity,
    QueueCommand,
    QueueEntry,
    SlaState,
    SlaTick,
    decode,
    encode,
    item_key,
    queue_key,
)
from iwd_stream.domain.dispatch import dispatch, offers_wanted, select, skip_reason
from iwd_stream.domain.queue import Change, QueueIndex, Slot, capacity_from_offer
from iwd_stream.domain.rules import RuleBook
from iwd_stream.domain.workitem import assigned_event, released_event, sla_event
from iwd_stream.errors import DecodeError
from iwd_stream.kafka.producer import murmur2_partition
from iwd_stream.observability.metrics import Metrics
from iwd_stream.streaming.results import Output, Result, dead_letter, revoked_notice
from iwd_stream.topics import TopicNames

STAGE = "queues"
MAX_REMEMBERED_CAPACITY = 100_000


CAPACITY_PREFIX = b"\x00capacity/"
SEEN_PREFIX = b"\x00seen/"
# How long a capacity_id is remembered, so the same message again (a producer retry, a replay
# after a crash) does not book the resource twice once its offer has left the queue.
CAPACITY_DEDUP_WINDOW = timedelta(hours=1)


def seen_key(cap: Capacity) -> bytes:
    return SEEN_PREFIX + f"{cap.tenant}/{cap.queue}/{cap.capacity_id}".encode()


def capacity_key(cap: Capacity) -> bytes:
    """Key of a standing capacity in the ``queue_entries`` table (never a valid entry key)."""
    return CAPACITY_PREFIX + f"{cap.tenant}/{cap.queue}/{cap.capacity_id}".encode()


def table_key(tenant: str, queue: str, capture_id: str) -> bytes:
    """Key of a queue entry in the ``queue_entries`` table (its changelog partition is the queue's)."""
    return f"{tenant}/{queue}/{capture_id}".encode()


class QueuesProcessor:
    """Apply queue commands, SLA ticks and capacity to the queues of the owned partitions."""

    def __init__(
        self,
        *,
        rules: RuleBook,
        names: TopicNames,
        metrics: Metrics,
        partitions: int,
        offer_timeout_s: float | None = None,
    ) -> None:
        self.rules = rules
        self.names = names
        self.metrics = metrics
        self.partitions = partitions
        self.offer_timeout_override = (
            timedelta(seconds=offer_timeout_s) if offer_timeout_s is not None else None
        )
        self.indexes: dict[str, QueueIndex] = {}
        self.by_partition: dict[int, set[str]] = {}
        # capacity_id -> offers it made, to recognise a capacity message replayed after a crash
        # without scanning the queue. Bounded; an entry is re-checked against the index on use.
        self.offers_by_capacity: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()
        # Capacity that found no eligible item waits here (oldest first) for the next item
        # that becomes eligible: a routing consumer says "I can take work" once, not in a loop.
        self.standing: dict[str, dict[str, Capacity]] = {}
        # partition -> capacity_id -> (table key, first seen); oldest first, for expiry on ticks.
        self.seen_capacity: dict[int, OrderedDict[str, tuple[bytes, datetime]]] = {}
        self._built = False

    # --- index maintenance -------------------------------------------------------------------

    def invalidate(self) -> None:
        """Forget the in-memory indexes (partitions were revoked or assigned)."""
        self._built = False

    @property
    def built(self) -> bool:
        return self._built

    def _index(self, tenant: str, queue: str) -> QueueIndex:
        qkey = queue_key(tenant, queue)
        index = self.indexes.get(qkey)
        if index is None:
            rules = self.rules.get(tenant) if tenant in self.rules else None
            if rules is not None:
                index = QueueIndex(weights=rules.weights, calendars=rules.calendar)
            else:
                index = QueueIndex()
            self.indexes[qkey] = index
            part = murmur2_partition(qkey.encode(), self.partitions)
            self.by_partition.setdefault(part, set()).add(qkey)
        return index

    def rebuild(
        self, items: Iterable[tuple[Any, Any]], active_partitions: set[int], now: datetime
    ) -> Result:
        """Rebuild every index from the table entries of the partitions this worker owns.

        Returns the SLA events for entries that are no longer on track (their item may not have
        heard yet; the workitems stage drops the ones it already applied).
        """
        self.indexes.clear()
        self.by_partition.clear()
        self.offers_by_capacity.clear()
        self.standing.clear()
        self.seen_capacity.clear()
        result = Result()
        seen: list[tuple[datetime, int, str, bytes]] = []
        for key, raw in items:
            if raw is None:
                continue
            if bytes(key).startswith(SEEN_PREFIX):
                tenant, queue, capacity_id = bytes(key)[len(SEEN_PREFIX) :].decode().split("/", 2)
                part = murmur2_partition(queue_key(tenant, queue).encode(), self.partitions)
                if part in active_partitions:
                    at = datetime.fromisoformat(bytes(raw).decode())
                    seen.append((at, part, capacity_id, bytes(key)))
                continue
            if bytes(key).startswith(CAPACITY_PREFIX):
                cap = Capacity.model_validate_json(raw)
                qkey = queue_key(cap.tenant, cap.queue)
                if murmur2_partition(qkey.encode(), self.partitions) in active_partitions:
                    self._index(cap.tenant, cap.queue)
                    self.standing.setdefault(qkey, {})[cap.capacity_id] = cap
                continue
            entry = QueueEntry.model_validate_json(raw)
            qkey = queue_key(entry.tenant, entry.queue)
            if murmur2_partition(qkey.encode(), self.partitions) not in active_partitions:
                continue
            change = self._index(entry.tenant, entry.queue).upsert(entry, now)
            if entry.offer is not None:
                self._remember_offer(entry)
            if change is not None:
                self._on_change(change, now, result)
        for at, part, capacity_id, key in sorted(seen):
            self.seen_capacity.setdefault(part, OrderedDict())[capacity_id] = (key, at)
        self._built = True
        return result

    # --- message handling --------------------------------------------------------------------

    def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        now: datetime,
    ) -> Result:
        result = Result()
        try:
            if topic == self.names.queue_commands:
                self._on_command(decode(value, QueueCommand), now, result)
            elif topic == self.names.ticks:
                self._on_tick(decode(value, SlaTick), partition, result)
            elif topic == self.names.capacity:
                cap = decode(value, Capacity)
                expected = queue_key(cap.tenant, cap.queue).encode()
                if key != expected:
                    raise DecodeError("key_mismatch", f"message key {key!r} is not {expected!r}")
                if cap.tenant not in self.rules:
                    raise DecodeError("unknown_tenant", f"no rules for tenant {cap.tenant!r}")
                self._on_capacity(cap, now, result)
        except DecodeError as exc:
            self.metrics.deadlettered.labels(STAGE, exc.reason).inc()
            result.outputs.append(
                dead_letter(self.names, STAGE, exc, topic, partition, offset, key, value, now)
            )
        return result

    def _on_command(self, cmd: QueueCommand, now: datetime, result: Result) -> None:
        index = self._index(cmd.tenant, cmd.queue)
        outcome, change = index.apply(cmd, now)
        label = "ignored" if outcome.ignored else "applied"
        self.metrics.events.labels(STAGE, cmd.op.value, label).inc()
        if outcome.changed:
            key = table_key(cmd.tenant, cmd.queue, cmd.capture_id)
            result.writes.append(
                (key, encode_entry(outcome.entry) if outcome.entry is not None else None)
            )
        if change is not None:
            self._on_change(change, now, result)
        if outcome.changed and outcome.entry is not None:
            self._feed_standing(index, outcome.entry, now, result)
        if outcome.freed is not None:
            # The offer was revoked (the item ended or moved while offered): tell the routing
            # consumer, then give the freed capacity of that resource to the next eligible item.
            freed = outcome.freed
            self.metrics.assignments.labels(cmd.tenant, "revoked").inc()
            result.outputs.append(
                revoked_notice(
                    self.names,
                    cmd.tenant,
                    cmd.queue,
                    cmd.capture_id,
                    freed.assignment_id,
                    freed.resource_id,
                    now,
                )
            )
            self._dispatch(
                index, capacity_from_offer(freed, cmd.tenant, cmd.queue, now), now, result
            )

    def _on_tick(self, tick: SlaTick, partition: int, result: Result) -> None:
        started = time.perf_counter()
        seen = self.seen_capacity.get(partition)
        horizon = tick.tick_at - CAPACITY_DEDUP_WINDOW
        while seen and next(iter(seen.values()))[1] < horizon:
            _, (key, _) = seen.popitem(last=False)
            result.writes.append((key, None))  # this tick's partition is the key's partition
        changed = 0
        for qkey in self.by_partition.get(partition, ()):
            for change in self.indexes[qkey].advance(tick.tick_at):
                changed += 1
                self._on_change(change, tick.tick_at, result)
        self.metrics.tick_seconds.observe(time.perf_counter() - started)
        self.metrics.rescored_per_tick.observe(changed)

    def _on_change(self, change: Change, now: datetime, result: Result) -> None:
        entry = change.entry
        if change.timed_out is not None:
            offer = change.timed_out
            result.writes.append(
                (table_key(entry.tenant, entry.queue, entry.capture_id), encode_entry(entry))
            )
            self.metrics.assignments.labels(entry.tenant, "timed_out").inc()
            event = released_event(
                entry.tenant,
                entry.capture_id,
                offer.assignment_id,
                entry.queue,
                offer.resource_id,
                AssignmentState.TIMED_OUT,
                now,
                reason="no answer by the offer deadline",
            )
            result.outputs.append(self._event_output(event))
            index = self.indexes.get(queue_key(entry.tenant, entry.queue))
            if index is not None:
                self._feed_standing(index, entry, now, result)
        if change.sla_before is not change.sla_after and change.sla_after is not SlaState.ON_TRACK:
            result.outputs.append(
                self._event_output(sla_event(entry.tenant, entry.capture_id, change.sla_after, now))
            )

    def _on_capacity(self, cap: Capacity, now: datetime, result: Result) -> None:
        started = time.perf_counter()
        index = self._index(cap.tenant, cap.queue)
        # A capacity message replayed after a crash re-sends the offers it made, not new ones.
        replayed = []
        for qkey, capture_id in self.offers_by_capacity.get(cap.capacity_id, ()):
            slot = self.indexes[qkey].slot(capture_id) if qkey in self.indexes else None
            if (
                slot is not None
                and slot.entry.offer is not None
                and slot.entry.offer.capacity_id == cap.capacity_id
            ):
                replayed.append(slot)
        if replayed:
            for slot in replayed:
                self._resend_offer(index, slot, cap, result)
            return
        if cap.capacity_id in self.standing.get(queue_key(cap.tenant, cap.queue), {}):
            return  # replayed, and already waiting for work
        part = murmur2_partition(queue_key(cap.tenant, cap.queue).encode(), self.partitions)
        seen = self.seen_capacity.setdefault(part, OrderedDict())
        if cap.capacity_id in seen:
            self.metrics.events.labels(STAGE, "capacity", "duplicate").inc()
            return  # used before: its offers were answered and left the queue
        seen[cap.capacity_id] = (seen_key(cap), now)
        result.writes.append((seen_key(cap), now.isoformat().encode()))
        self.metrics.events.labels(STAGE, "capacity", "applied").inc()
        self._dispatch(index, cap, now, result)
        self.metrics.dispatch_seconds.observe(time.perf_counter() - started)

    def _feed_standing(
        self, index: QueueIndex, entry: QueueEntry, now: datetime, result: Result
    ) -> None:
        """Offer an entry that just became eligible to the oldest standing capacity that fits.

        A standing capacity found nothing eligible when it arrived or last looked, so an entry
        that changed now is the best candidate it can have: exact order holds.
        """
        waiting = self.standing.get(queue_key(entry.tenant, entry.queue))
        if not waiting:
            return
        for cap in list(waiting.values()):
            current = index.get(entry.capture_id)
            if current is None or current.offer is not None:
                return
            if skip_reason(current, cap.resource, now) is None:
                self._dispatch(index, cap, now, result, standing=True)

    def _dispatch(
        self,
        index: QueueIndex,
        cap: Capacity,
        now: datetime,
        result: Result,
        *,
        standing: bool = False,
    ) -> None:
        """Offer the best eligible items for ``cap``; what stays unused stands for later items."""
        offer_timeout = self._offer_timeout(cap.tenant)
        out = dispatch(index, cap, now, offer_timeout)
        left = offers_wanted(cap) - len(out.assignments)
        waiting = self.standing.setdefault(queue_key(cap.tenant, cap.queue), {})
        if left > 0 and (out.assignments or not standing):
            rest = cap.model_copy(
                update={
                    "credits": left,
                    "resource": cap.resource.model_copy(update={"slots": left})
                    if cap.resource
                    else None,
                }
            )
            waiting[cap.capacity_id] = rest
            result.writes.append((capacity_key(rest), rest.model_dump_json().encode()))
        elif left <= 0 and cap.capacity_id in waiting:
            del waiting[cap.capacity_id]
            result.writes.append((capacity_key(cap), None))
        for change in out.changes:
            self._on_change(change, now, result)
        for entry in out.entries:
            result.writes.append(
                (table_key(entry.tenant, entry.queue, entry.capture_id), encode_entry(entry))
            )
            self._remember_offer(entry)
        for assignment in out.assignments:
            result.outputs.append(self._assignment_output(assignment))
            self.metrics.assignments.labels(cap.tenant, "offered").inc()
        for event in out.events:
            result.outputs.append(self._event_output(event))

    def _resend_offer(self, index: QueueIndex, slot: Slot, cap: Capacity, result: Result) -> None:
        offer = slot.entry.offer
        assert offer is not None
        # select() builds the same Assignment again: same item_seq and capacity_id give the
        # same assignment_id, and the offer's own instant gives the same deadline and score.
        bare = replace(slot, entry=slot.entry.model_copy(update={"offer": None}))
        again = select(
            [bare], cap, offer.offered_at, offer.offer_deadline - offer.offered_at, index.weights
        )
        for assignment in again:
            result.outputs.append(self._assignment_output(assignment))
            event = assigned_event(
                assignment.tenant,
                assignment.capture_id,
                assignment.assignment_id,
                assignment.queue,
                assignment.resource_id,
                assignment.offer_deadline,
                assignment.score,
                offer.offered_at,
            )
            result.outputs.append(self._event_output(event))

    def _remember_offer(self, entry: QueueEntry) -> None:
        assert entry.offer is not None
        offers = self.offers_by_capacity.setdefault(entry.offer.capacity_id, [])
        offers.append((queue_key(entry.tenant, entry.queue), entry.capture_id))
        self.offers_by_capacity.move_to_end(entry.offer.capacity_id)
        while len(self.offers_by_capacity) > MAX_REMEMBERED_CAPACITY:
            self.offers_by_capacity.popitem(last=False)

    def _offer_timeout(self, tenant: str) -> timedelta:
        if self.offer_timeout_override is not None:
            return self.offer_timeout_override
        return self.rules.get(tenant).offer_timeout

    # --- outputs -----------------------------------------------------------------------------

    def _assignment_output(self, assignment: Assignment) -> Output:
        key = queue_key(assignment.tenant, assignment.queue).encode()
        return Output(self.names.assignments, key, encode(assignment))

    def _event_output(self, event: Any) -> Output:
        return Output(
            self.names.events, item_key(event.tenant, event.capture_id).encode(), encode(event)
        )

    # --- queries -----------------------------------------------------------------------------

    def top(self, tenant: str, queue: str, n: int, now: datetime) -> dict[str, Any]:
        index = self.indexes.get(queue_key(tenant, queue))
        items: list[dict[str, Any]] = []
        if index is not None:
            for slot in index.ordered():
                if len(items) >= n:
                    break
                items.append(describe_slot(index, slot, now))
        return {
            "tenant": tenant,
            "queue": queue,
            "depth": len(index) if index else 0,
            "items": items,
        }

    def describe_item(
        self, tenant: str, queue: str | None, capture_id: str, now: datetime
    ) -> dict[str, Any] | None:
        if not queue:
            return None
        index = self.indexes.get(queue_key(tenant, queue))
        slot = index.slot(capture_id) if index is not None else None
        return describe_slot(index, slot, now) if index is not None and slot is not None else None

    def entry_count(self) -> int:
        return sum(len(index) for index in self.indexes.values())

    def summaries(self, now: datetime) -> list[dict[str, Any]]:
        """Return every owned queue's figures (O(queues): the indexes keep their counts)."""
        out = []
        for qkey, index in self.indexes.items():
            tenant, queue = qkey.split("/", 1)
            stats = index.stats()
            oldest = index.oldest_enqueued()
            out.append(
                {
                    "tenant": tenant,
                    "queue": queue,
                    "depth": stats["depth"],
                    "offered": stats["offered"],
                    "held": stats["held"],
                    "oldest_age_s": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
                    "at_risk": stats[SlaState.AT_RISK.value],
                    "breached": stats[SlaState.BREACHED.value] + stats[SlaState.EXPIRED.value],
                    "standing_capacity": sum(
                        offers_wanted(c) for c in self.standing.get(qkey, {}).values()
                    ),
                }
            )
        return out

    def publish_queue_gauges(self, now: datetime) -> None:
        for s in self.summaries(now):
            labels = (s["tenant"], s["queue"])
            self.metrics.queue_depth.labels(*labels).set(s["depth"])
            self.metrics.queue_oldest_age.labels(*labels).set(s["oldest_age_s"])
            self.metrics.queue_at_risk.labels(*labels).set(s["at_risk"])
            self.metrics.queue_breached.labels(*labels).set(s["breached"])


def encode_entry(entry: QueueEntry) -> bytes:
    return entry.model_dump_json(exclude_none=True).encode()


def describe_slot(index: QueueIndex, slot: Slot, now: datetime) -> dict[str, Any]:
    """Return the query API's view of one queued item: score, breakdown, SLA, age, offer."""
    entry = slot.entry
    s = index.score(entry.capture_id, now)
    return {
        "capture_id": entry.capture_id,
        "score": s.value,
        "priority": s.priority,
        "business_value": entry.business_value,
        "sla_state": s.sla_state.value,
        "due_at": entry.due_at.isoformat() if entry.due_at else None,
        "age_s": round((now - entry.created_at).total_seconds(), 1),
        "held": entry.held,
        "offer": entry.offer.model_dump(mode="json") if entry.offer else None,
        "breakdown": [t.model_dump() for t in s.terms],
    }
