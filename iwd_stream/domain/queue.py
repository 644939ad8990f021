"""The queues stage's in-memory structures: an ordered index per queue and its timeline.

:class:`QueueIndex` keeps one queue's entries in exact score order and knows, for each entry,
the next instant its score, SLA state or offer changes. :meth:`QueueIndex.advance` touches only
the entries whose instant has come, so a tick over a million quiet entries costs one heap peek.

Nothing here is durable: the queues stage keeps the entries in its table and rebuilds the index
from it on recovery (:meth:`QueueIndex.upsert` for each, or :meth:`QueueIndex.rebuild`).

Per queue command the stage calls :meth:`QueueIndex.apply` (pure merge rules in
:func:`apply_command`), writes ``result.entry`` to its table (or deletes the key when None) and,
when ``result.freed`` is set, dispatches that returned capacity again.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from iwd_stream.contracts.models import (
    Capacity,
    Offer,
    QueueCommand,
    QueueCommandOp,
    QueueEntry,
    SlaState,
)
from iwd_stream.domain.business_calendar import BusinessCalendar
from iwd_stream.domain.scoring import (
    DEFAULT_WEIGHTS,
    Scorable,
    Score,
    SortKey,
    Weights,
    score_scorable,
)
from iwd_stream.domain.timeutil import from_us, to_us


class SortedKeyList:
    """A sorted list of unique keys in bounded chunks: insert/remove O(log n + chunk), ordered scan.

    One flat list would cost a memmove of the whole list per insert (milliseconds at a million);
    chunks of at most ``2 * load`` keys keep each list operation small.

    >>> s = SortedKeyList(load=2)
    >>> for k in [5, 1, 4, 2, 3]:
    ...     s.add((k, 0, 0, str(k)))
    >>> [k[0] for k in s], len(s), s.first()[0]
    ([1, 2, 3, 4, 5], 5, 1)
    >>> s.remove((3, 0, 0, "3")); [k[0] for k in s]
    [1, 2, 4, 5]
    """

    def __init__(self, load: int = 512) -> None:
        self._load = load
        self._lists: list[list[SortKey]] = []
        self._maxes: list[SortKey] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[SortKey]:
        for chunk in self._lists:
            yield from chunk

    def first(self) -> SortKey:
        """Return the smallest key; IndexError when empty."""
        if not self._lists:
            raise IndexError("first() of an empty SortedKeyList")
        return self._lists[0][0]

    def add(self, key: SortKey) -> None:
        """Insert ``key`` (which must not be present)."""
        if not self._maxes:
            self._lists.append([key])
            self._maxes.append(key)
        else:
            i = bisect_left(self._maxes, key)
            if i == len(self._maxes):
                i -= 1
                self._lists[i].append(key)
                self._maxes[i] = key
            else:
                insort(self._lists[i], key)
            if len(self._lists[i]) > 2 * self._load:
                chunk = self._lists[i]
                half = chunk[self._load :]
                del chunk[self._load :]
                self._maxes[i] = chunk[-1]
                self._lists.insert(i + 1, half)
                self._maxes.insert(i + 1, half[-1])
        self._len += 1

    def remove(self, key: SortKey) -> None:
        """Remove ``key``; KeyError when it is not present."""
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            raise KeyError(key)
        chunk = self._lists[i]
        j = bisect_left(chunk, key)
        if j == len(chunk) or chunk[j] != key:
            raise KeyError(key)
        del chunk[j]
        self._len -= 1
        if not chunk:
            del self._lists[i]
            del self._maxes[i]
        elif j == len(chunk):
            self._maxes[i] = chunk[-1]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple):
            return False
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            return False
        chunk = self._lists[i]
        j = bisect_right(chunk, key) - 1
        return j >= 0 and chunk[j] == key


class Timeline:
    """Ids by due instant (integer microseconds): a heap with lazy deletion.

    Rescheduling or cancelling only updates a dict; stale heap rows are skipped when popped and
    the heap is rebuilt when they outnumber live ones, so memory stays O(live).

    >>> t = Timeline()
    >>> t.schedule("a", 30); t.schedule("b", 10); t.schedule("a", 20); t.cancel("b")
    >>> t.peek(), list(t.pop_due(25)), t.peek()
    (20, ['a'], None)
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._at: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._at)

    def schedule(self, key: str, at_us: int | None) -> None:
        """Set (or with None, clear) the instant of ``key``."""
        if at_us is None:
            self._at.pop(key, None)
            return
        if self._at.get(key) == at_us:
            return
        self._at[key] = at_us
        heapq.heappush(self._heap, (at_us, key))
        if len(self._heap) > 2 * len(self._at) + 1024:
            self._heap = [(t, k) for k, t in self._at.items()]
            heapq.heapify(self._heap)

    def cancel(self, key: str) -> None:
        self._at.pop(key, None)

    def peek(self) -> int | None:
        """Return the earliest live instant (None when nothing is scheduled)."""
        heap = self._heap
        while heap and self._at.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now_us: int) -> Iterator[str]:
        """Pop and yield every key due at or before ``now_us`` (each once)."""
        heap = self._heap
        while heap and heap[0][0] <= now_us:
            at, key = heapq.heappop(heap)
            if self._at.get(key) == at:
                del self._at[key]
                yield key


@dataclass
class Slot:
    """One indexed entry: the entry, its prepared scorer, its current key and SLA state.

    ``keyed_at`` is the instant ``key`` was computed for; a held entry's score is frozen there.
    ``parked`` entries (held, offered, not yet active, expired) keep their place in the order
    but sit in a separate list, so dispatch never walks past them.
    """

    entry: QueueEntry
    scorable: Scorable
    key: SortKey
    sla: SlaState
    keyed_at: datetime
    parked: bool = False


def _parked(entry: QueueEntry, now: datetime) -> bool:
    return (
        entry.held
        or entry.offer is not None
        or (entry.activate_at is not None and entry.activate_at > now)
        or (entry.expire_at is not None and entry.expire_at <= now)
    )


@dataclass(frozen=True)
class Change:
    """Something a tick found for the stage to act on.

    ``sla_before != sla_after``: send an ``sla`` event to the item. ``timed_out`` set: the
    offer passed its deadline; the index already cleared it (write ``entry`` to the table) and
    the stage sends a ``released`` (timed_out) event to the item.
    """

    entry: QueueEntry
    sla_before: SlaState | None
    sla_after: SlaState
    timed_out: Offer | None = None


@dataclass(frozen=True)
class CommandResult:
    """The entry after a queue command (None: removed), and the capacity it gives back."""

    entry: QueueEntry | None
    changed: bool
    freed: Offer | None = None
    ignored: str | None = None


def apply_command(existing: QueueEntry | None, cmd: QueueCommand) -> CommandResult:
    """Merge a queue command into the stored entry; pure.

    The rules that keep dispatch single:

    * a command older than the entry (``item_seq`` lower) is ignored (a replay);
    * a live offer survives every command that does not name it in ``release_assignment_id``,
      because the command may have been issued before the workitems stage saw the offer;
    * removing an entry whose offer was not released by name gives that offer's capacity back,
      and so does a release with ``return_capacity`` (the offer was revoked, not declined);
    * ``update`` keeps resources the stage excluded itself (offer time-outs) that the item has
      not heard of yet; ``enqueue`` replaces the entry (a restart clears exclusions).

    >>> from datetime import UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> e = QueueEntry(tenant="t", capture_id="c", queue="q", priority=1, created_at=t, enqueued_at=t)
    >>> offered = e.model_copy(update={"offer": Offer(assignment_id="a1", capacity_id="k",
    ...     offered_at=t, offer_deadline=t)})
    >>> upd = QueueCommand(op=QueueCommandOp.UPDATE, command_id="x", tenant="t", queue="q",
    ...     capture_id="c", item_seq=2, entry=e.model_copy(update={"priority": 5}), issued_at=t)
    >>> r = apply_command(offered, upd)
    >>> r.entry.priority, r.entry.offer.assignment_id     # offer kept: not named
    (5, 'a1')
    """
    if existing is not None and cmd.item_seq < existing.item_seq:
        return CommandResult(
            existing, False, ignored=f"stale command (seq {cmd.item_seq} < {existing.item_seq})"
        )
    offer = existing.offer if existing is not None else None
    named = offer is not None and cmd.release_assignment_id == offer.assignment_id
    if cmd.op is QueueCommandOp.REMOVE:
        if existing is None:
            return CommandResult(None, False, ignored="not in queue")
        freed = offer if offer is not None and (not named or cmd.return_capacity) else None
        return CommandResult(None, True, freed)
    if cmd.entry is None:
        return CommandResult(existing, False, ignored=f"{cmd.op.value} without an entry")
    entry = cmd.entry
    freed = None
    if named:
        if cmd.return_capacity:
            freed = offer
        offer = None
    excluded = list(entry.excluded_resources)
    if cmd.op is QueueCommandOp.UPDATE and existing is not None:
        excluded += [r for r in existing.excluded_resources if r not in excluded]
    new = entry.model_copy(update={"offer": offer, "excluded_resources": excluded})
    return CommandResult(new, new != existing, freed)


RETURNED = ":returned:"


def capacity_from_offer(offer: Offer, tenant: str, queue: str, now: datetime) -> Capacity:
    """Return the capacity a revoked offer gives back (same resource, one credit).

    The id names the capacity the routing consumer published and the offer that returned it,
    so it stays bounded however often the same credit is returned again:

    >>> from datetime import UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> o = Offer(assignment_id="a2", capacity_id="r1:7:returned:a1", offered_at=t, offer_deadline=t)
    >>> capacity_from_offer(o, "t", "q", t).capacity_id
    'r1:7:returned:a2'
    """
    published = offer.capacity_id.split(RETURNED, 1)[0]
    return Capacity(
        capacity_id=f"{published}{RETURNED}{offer.assignment_id}",
        tenant=tenant,
        queue=queue,
        credits=1,
        resource=offer.resource.model_copy(update={"slots": 1}) if offer.resource else None,
        occurred_at=now,
    )


CalendarLookup = Callable[[str | None], BusinessCalendar | None]


def _no_calendars(name: str | None) -> BusinessCalendar | None:
    return None


class QueueIndex:
    """One queue's entries in exact score order, plus when each next changes.

    ``calendars`` resolves an entry's calendar name (pass ``TenantRules.calendar``).

    >>> from datetime import UTC, timedelta
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> q = QueueIndex(weights=Weights(age_per_hour=0))
    >>> for cid, p in [("low", 10), ("high", 90), ("mid", 50)]:
    ...     _ = q.upsert(QueueEntry(tenant="t", capture_id=cid, queue="q", priority=p,
    ...                             created_at=t, enqueued_at=t), t)
    >>> [s.entry.capture_id for s in q.ordered()]
    ['high', 'mid', 'low']
    """

    def __init__(
        self,
        weights: Weights = DEFAULT_WEIGHTS,
        calendars: CalendarLookup = _no_calendars,
        load: int = 512,
    ) -> None:
        self.weights = weights
        self._units = weights.units()
        self._calendars = calendars
        self._slots: dict[str, Slot] = {}
        self._ready = SortedKeyList(load)
        self._parked = SortedKeyList(load)
        self._timeline = Timeline()
        # Kept as entries move, so a queue summary costs O(1), not a scan of the queue.
        self._tally: Counter[str] = Counter()
        self._by_age: list[tuple[int, str]] = []  # (enqueued_at us, capture_id), lazy deletion

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, capture_id: object) -> bool:
        return capture_id in self._slots

    def get(self, capture_id: str) -> QueueEntry | None:
        slot = self._slots.get(capture_id)
        return slot.entry if slot is not None else None

    def slot(self, capture_id: str) -> Slot | None:
        return self._slots.get(capture_id)

    def ordered(self) -> Iterator[Slot]:
        """Yield every slot best first, parked ones included (call advance first)."""
        slots = self._slots
        for key in heapq.merge(self._ready, self._parked):
            yield slots[key[3]]

    def ready(self) -> Iterator[Slot]:
        """Yield the dispatchable slots best first: not held, offered, inactive or expired."""
        slots = self._slots
        for key in self._ready:
            yield slots[key[3]]

    def _place(self, slot: Slot, now: datetime) -> None:
        slot.parked = _parked(slot.entry, now)
        (self._parked if slot.parked else self._ready).add(slot.key)
        self._count(slot, 1)

    def _unplace(self, slot: Slot) -> None:
        (self._parked if slot.parked else self._ready).remove(slot.key)
        self._count(slot, -1)

    def _count(self, slot: Slot, sign: int) -> None:
        tally = self._tally
        entry = slot.entry
        tally[slot.sla.value] += sign
        if entry.offer is not None:
            tally["offered"] += sign
        if entry.held:
            tally["held"] += sign

    def stats(self) -> dict[str, int]:
        """Return depth, offered, held and the count per SLA state, without scanning.

        >>> from datetime import UTC
        >>> t = datetime(2024, 1, 1, tzinfo=UTC)
        >>> q = QueueIndex()
        >>> _ = q.upsert(QueueEntry(tenant="t", capture_id="a", queue="q", priority=1,
        ...                         created_at=t, enqueued_at=t, held=True), t)
        >>> q.stats()["depth"], q.stats()["held"], q.stats()["on_track"]
        (1, 1, 1)
        """
        out = {state.value: self._tally[state.value] for state in SlaState}
        out.update(depth=len(self._slots), offered=self._tally["offered"], held=self._tally["held"])
        return out

    def oldest_enqueued(self) -> datetime | None:
        """Return when the longest-waiting entry was enqueued (None when the queue is empty)."""
        heap, slots = self._by_age, self._slots
        while heap:
            at, cid = heap[0]
            slot = slots.get(cid)
            if slot is not None and to_us(slot.entry.enqueued_at) == at:
                return from_us(at)
            heapq.heappop(heap)
        return None

    def score(self, capture_id: str, now: datetime) -> Score:
        """Return the score and breakdown of an indexed entry at ``now``.

        A held entry is frozen: its score is the one it had when it was last keyed (on hold).
        """
        slot = self._slots[capture_id]
        at = slot.keyed_at if slot.entry.held else now
        return score_scorable(slot.scorable, at, self.weights)

    def _schedule(self, slot: Slot, now: datetime) -> None:
        entry = slot.entry
        at = None if entry.held else slot.scorable.next_change(now)
        # Also wake up when an offer runs out (at once if it already has) and when an entry
        # becomes active, so that it leaves the parked list.
        wake = []
        if entry.offer is not None:
            wake.append(max(entry.offer.offer_deadline, now))
        if not entry.held and entry.activate_at is not None and entry.activate_at > now:
            wake.append(entry.activate_at)
        for extra in wake:
            at = extra if at is None else min(at, extra)
        self._timeline.schedule(entry.capture_id, to_us(at) if at is not None else None)

    def upsert(self, entry: QueueEntry, now: datetime) -> Change | None:
        """Insert or replace an entry; return a Change when its SLA state differs from before."""
        cid = entry.capture_id
        old = self._slots.get(cid)
        if old is not None:
            self._unplace(old)
        scorable = Scorable(entry, self._calendars(entry.calendar))
        slot = Slot(entry, scorable, scorable.key_at(now, self._units), scorable.sla(now), now)
        self._slots[cid] = slot
        self._place(slot, now)
        self._schedule(slot, now)
        if old is None or old.entry.enqueued_at != entry.enqueued_at:
            heapq.heappush(self._by_age, (to_us(entry.enqueued_at), cid))
            if len(self._by_age) > 2 * len(self._slots) + 1024:
                self._by_age = [(to_us(s.entry.enqueued_at), c) for c, s in self._slots.items()]
                heapq.heapify(self._by_age)
        before = old.sla if old is not None else None
        if before is not slot.sla and not (before is None and slot.sla is SlaState.ON_TRACK):
            return Change(entry, before, slot.sla)
        return None

    def remove(self, capture_id: str) -> QueueEntry | None:
        """Remove an entry; return it (None when absent)."""
        slot = self._slots.pop(capture_id, None)
        if slot is None:
            return None
        self._unplace(slot)
        self._timeline.cancel(capture_id)
        return slot.entry

    def apply(self, cmd: QueueCommand, now: datetime) -> tuple[CommandResult, Change | None]:
        """Apply a queue command to the index (see :func:`apply_command`)."""
        result = apply_command(self.get(cmd.capture_id), cmd)
        change = None
        if result.changed:
            if result.entry is None:
                self.remove(cmd.capture_id)
            else:
                change = self.upsert(result.entry, now)
        return result, change

    def rebuild(self, entries: Iterable[QueueEntry], now: datetime) -> list[Change]:
        """Load entries after recovery; return those not on track (their item may not know)."""
        changes = []
        for entry in entries:
            change = self.upsert(entry, now)
            if change is not None:
                changes.append(change)
        return changes

    def set_offer(self, capture_id: str, offer: Offer | None, now: datetime) -> QueueEntry:
        """Record (or clear) the live offer of an entry; return the entry to store."""
        slot = self._slots[capture_id]
        entry = slot.entry.model_copy(update={"offer": offer})
        self._unplace(slot)
        slot.entry = entry
        slot.scorable.entry = entry
        self._place(slot, now)
        self._schedule(slot, now)
        return entry

    def next_wakeup(self) -> datetime | None:
        """Return the earliest instant anything in this queue changes (None: nothing will)."""
        at = self._timeline.peek()
        return from_us(at) if at is not None else None

    def advance(self, now: datetime) -> list[Change]:
        """Re-key the entries whose instant has come; return what the stage must act on.

        Idempotent: a second call with the same ``now`` finds nothing due.
        """
        changes: list[Change] = []
        units = self._units
        for cid in list(self._timeline.pop_due(to_us(now))):
            slot = self._slots.get(cid)
            if slot is None:
                continue
            timed_out = None
            offer = slot.entry.offer
            if offer is not None and offer.offer_deadline <= now:
                timed_out = offer
                excluded = list(slot.entry.excluded_resources)
                if offer.resource_id and offer.resource_id not in excluded:
                    excluded.append(offer.resource_id)
                entry = slot.entry.model_copy(
                    update={"offer": None, "excluded_resources": excluded}
                )
                self._unplace(slot)
                slot.entry = entry
                slot.scorable.entry = entry
                self._place(slot, now)
            before = slot.sla
            self._unplace(slot)
            if not slot.entry.held:
                slot.key = slot.scorable.key_at(now, units)
                slot.keyed_at = now
                slot.sla = slot.scorable.sla(now)
            self._place(slot, now)
            self._schedule(slot, now)
            if timed_out is not None or slot.sla is not before:
                changes.append(Change(slot.entry, before, slot.sla, timed_out))
        return changes
