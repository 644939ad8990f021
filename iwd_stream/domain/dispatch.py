"""Dispatch policy: which queued items a capacity offer gets, and the assignments for them.

Worked example (one resource, two slots, queue in score order A > B > C > D)::

    A  held                         -> skipped (held)
    B  offered to r2 already        -> skipped (offered)
    C  needs skill "fr", r1 has en  -> skipped (skills)
    D  eligible                     -> offered to r1, assignment_id = uuid5(t/q/D/seq/capacity)
    (end of queue: one slot stays unused; the capacity is not carried over)

The assignment id is a name-based UUID of (tenant, queue, capture_id, item_seq, capacity_id):
a replayed capacity message offers the same item under the same id, so the routing consumer
and the workitems stage recognise the repeat.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from iwd_stream.contracts.models import (
    Assignment,
    Capacity,
    LifecycleEvent,
    Offer,
    QueueEntry,
    ResourceOffer,
)
from iwd_stream.domain.queue import Change, QueueIndex, Slot
from iwd_stream.domain.scoring import DEFAULT_WEIGHTS, Weights, score_scorable
from iwd_stream.domain.workitem import assigned_event

NAMESPACE = uuid.UUID("6f1c4c1e-5b7a-4a8e-9a57-2b9e2c0a1d10")


def assignment_id(tenant: str, queue: str, capture_id: str, item_seq: int, capacity_id: str) -> str:
    """Return the deterministic id of an offer.

    >>> assignment_id("t", "q", "INC1", 3, "cap-9") == assignment_id("t", "q", "INC1", 3, "cap-9")
    True
    """
    return str(uuid.uuid5(NAMESPACE, f"{tenant}/{queue}/{capture_id}/{item_seq}/{capacity_id}"))


def skip_reason(entry: QueueEntry, resource: ResourceOffer | None, now: datetime) -> str | None:
    """Return why ``entry`` cannot be offered to ``resource`` now (None: it can).

    Queue credits without a resource skip the skill and media checks: the routing consumer that
    asked for queue credits does its own matching.

    >>> from datetime import UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> e = QueueEntry(tenant="t", capture_id="c", queue="q", priority=1, created_at=t,
    ...                enqueued_at=t, skills=["fr"], excluded_resources=["r9"])
    >>> [skip_reason(e, ResourceOffer(resource_id=r, skills=s), t)
    ...  for r, s in [("r1", ["en"]), ("r9", ["fr"]), ("r2", ["fr", "en"])]]
    ['skills', 'excluded', None]
    """
    if entry.held:
        return "held"
    if entry.offer is not None:
        return "offered"
    if entry.activate_at is not None and entry.activate_at > now:
        return "not_active"
    if entry.expire_at is not None and entry.expire_at <= now:
        return "expired"
    if resource is not None:
        if resource.resource_id in entry.excluded_resources:
            return "excluded"
        if entry.skills and not set(entry.skills) <= set(resource.skills):
            return "skills"
        if (
            entry.media_type
            and resource.media_types
            and entry.media_type not in resource.media_types
        ):
            return "media"
    return None


def offers_wanted(capacity: Capacity) -> int:
    """Return how many items a capacity message asks for: credits, at most the resource's slots."""
    if capacity.resource is None:
        return capacity.credits
    return min(capacity.credits, capacity.resource.slots)


def select(
    slots: Iterable[Slot],
    capacity: Capacity,
    now: datetime,
    offer_timeout: timedelta,
    weights: Weights = DEFAULT_WEIGHTS,
) -> list[Assignment]:
    """Choose the items to offer for ``capacity`` from slots in queue order; pure.

    Takes the best eligible items first, at most :func:`offers_wanted` of them, each once.
    """
    wanted = offers_wanted(capacity)
    resource = capacity.resource
    out: list[Assignment] = []
    if wanted <= 0:
        return out
    chosen: set[str] = set()
    for slot in slots:
        entry = slot.entry
        if entry.capture_id in chosen or skip_reason(entry, resource, now) is not None:
            continue
        s = score_scorable(slot.scorable, now, weights)
        out.append(
            Assignment(
                assignment_id=assignment_id(
                    entry.tenant,
                    entry.queue,
                    entry.capture_id,
                    entry.item_seq,
                    capacity.capacity_id,
                ),
                capacity_id=capacity.capacity_id,
                tenant=entry.tenant,
                queue=entry.queue,
                capture_id=entry.capture_id,
                resource_id=resource.resource_id if resource else None,
                offered_at=now,
                offer_deadline=now + offer_timeout,
                score=s.value,
                breakdown=list(s.terms),
                priority=s.priority,
                business_value=entry.business_value,
                sla_state=s.sla_state,
                due_at=entry.due_at,
                skills=list(entry.skills),
                media_type=entry.media_type,
            )
        )
        chosen.add(entry.capture_id)
        if len(out) >= wanted:
            break
    return out


@dataclass(frozen=True)
class DispatchResult:
    """What a capacity message produced.

    Send ``assignments`` to the assignments topic and ``events`` (``assigned``) to the work-item
    events topic; write ``entries`` (now carrying their offer) to the queue table; act on
    ``changes`` as after a tick (the index was advanced to ``now`` first).
    """

    assignments: tuple[Assignment, ...]
    events: tuple[LifecycleEvent, ...]
    entries: tuple[QueueEntry, ...]
    changes: tuple[Change, ...]


def dispatch(
    index: QueueIndex, capacity: Capacity, now: datetime, offer_timeout: timedelta
) -> DispatchResult:
    """Advance the index to ``now``, choose offers for ``capacity`` and mark them offered.

    >>> from datetime import UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> q = QueueIndex()
    >>> for cid, p in [("A", 10), ("B", 90)]:
    ...     _ = q.upsert(QueueEntry(tenant="t", capture_id=cid, queue="q", priority=p,
    ...                             created_at=t, enqueued_at=t), t)
    >>> cap = Capacity(capacity_id="k1", tenant="t", queue="q", credits=1, occurred_at=t)
    >>> r = dispatch(q, cap, t, timedelta(seconds=30))
    >>> [a.capture_id for a in r.assignments], q.get("B").offer.assignment_id == r.assignments[0].assignment_id
    (['B'], True)
    >>> [a.capture_id for a in dispatch(q, cap, t, timedelta(seconds=30)).assignments]   # B is taken
    ['A']
    """
    changes = index.advance(now)
    chosen = select(index.ready(), capacity, now, offer_timeout, index.weights)
    events, entries = [], []
    for a in chosen:
        offer = Offer(
            assignment_id=a.assignment_id,
            capacity_id=capacity.capacity_id,
            resource_id=a.resource_id,
            resource=capacity.resource,
            offered_at=now,
            offer_deadline=a.offer_deadline,
        )
        entries.append(index.set_offer(a.capture_id, offer, now))
        events.append(
            assigned_event(
                a.tenant,
                a.capture_id,
                a.assignment_id,
                a.queue,
                a.resource_id,
                a.offer_deadline,
                a.score,
                now,
            )
        )
    return DispatchResult(tuple(chosen), tuple(events), tuple(entries), tuple(changes))
