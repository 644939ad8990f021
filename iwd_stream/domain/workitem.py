"""The work-item lifecycle: one pure function, :func:`apply`, from (state, event) to an outcome.

How an item's status is decided
-------------------------------
The source's events are merged, not replayed blindly, so that duplicates and out-of-order
delivery settle on one answer:

* every source event has a **stamp**: its ``version``, or ``occurred_at`` in microseconds when
  the source sends no version (a source is expected to do one or the other, not both);
* **fields** are merged last-writer-wins per field (and per attribute) by stamp, so an older
  ``update`` that arrives late still contributes the fields no newer event overwrote; an event
  that contributes nothing is **stale** and changes nothing;
* the lifecycle **claim** (active / held / completed / canceled) is last-writer-wins by stamp
  too, and a claim that is illegal where it lands (``resume`` of an active item) is rejected
  but still counts as the latest word, exactly as it would have been in version order;
* a final claim **absorbs**: events stamped after it are rejected; events stamped before it
  still merge their fields (in version order they came first) but cannot change the status.

The **status** is then derived, never stored independently::

    completed / canceled / rejected      <- the final claim (rejected = expired, by the engine)
    held                                 <- claim held
    error_held                           <- claim active, no queue after classification
    assigned                             <- claim active, offer live or accepted
    queued                               <- claim active otherwise

The engine's own events (``assigned``, ``released``, ``sla``, assignment responses) act on the
assignment state; they must name the live offer (``assignment_id``) or they are rejected, which
is what keeps a late or replayed response from reviving a dead offer (no double dispatch).

Worked example::

    create v1 {queue: billing}        -> queued        ENQUEUE billing
    assigned (offer a1 to r7)         -> assigned      (offered; the queues stage marked it)
    response declined a1 by r7        -> queued        UPDATE billing (excludes r7, releases a1)
    hold v2                           -> held          UPDATE billing (held)
    update v1 (late, {priority: 9})   -> held          priority merged: no newer write to it
    complete v3                       -> completed     REMOVE billing
    update v4                         -> completed     rejected: item is completed
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from iwd_stream.contracts.models import (
    FINAL_STATUSES,
    AssignmentRef,
    AssignmentResponse,
    AssignmentState,
    AttrValue,
    Claim,
    EventType,
    HistoryOutcome,
    HistoryRecord,
    LifecycleEvent,
    QueueCommand,
    QueueCommandOp,
    QueueEntry,
    ResponseOutcome,
    SlaState,
    Status,
    WorkItem,
    WorkItemFields,
    item_key,
    queue_key,
)
from iwd_stream.domain._build import build
from iwd_stream.domain.rules import TenantRules
from iwd_stream.domain.scoring import Reprioritization, sla_state
from iwd_stream.domain.timeutil import to_us

# Versions and occurred_at already catch most replays; the id window covers the recent events
# of one item (an item sees a handful per day), and each id costs changelog bytes per write.
SEEN_EVENT_IDS = 64
# The source name of the engine's own events (assigned, released, sla); sources may not use it.
ENGINE_SOURCE = "iwd.queues"
PAST_OFFERS = 16
EARLY_RESPONSES = 4


class Rejection(StrEnum):
    """Why an event was rejected; recorded in the history record's ``detail.rejection``."""

    ITEM_FINAL = "item_final"
    NOT_HELD = "not_held"
    ALREADY_HELD = "already_held"
    UNKNOWN_ITEM = "unknown_item"
    TENANT_MISMATCH = "tenant_mismatch"
    NOT_QUEUED = "not_queued"
    WRONG_QUEUE = "wrong_queue"
    OFFER_NOT_LIVE = "offer_not_live"
    ALREADY_OFFERED = "already_offered"
    BAD_EVENT = "bad_event"


@dataclass(frozen=True)
class Outcome:
    """What one event did: new state, its history records and the queue commands to send.

    ``changed`` says whether ``item`` must be written back (False for duplicates and stale
    events, whose history records carry the unchanged ``seq``). ``item`` is None only when an
    engine event names an item that does not exist.
    """

    item: WorkItem | None
    result: HistoryOutcome
    history: tuple[HistoryRecord, ...]
    commands: tuple[QueueCommand, ...]
    changed: bool
    rejection: Rejection | None = None


_CLAIMS: Mapping[EventType, Claim] = {
    EventType.HOLD: Claim.HELD,
    EventType.RESUME: Claim.ACTIVE,
    EventType.COMPLETE: Claim.COMPLETED,
    EventType.CANCEL: Claim.CANCELED,
    EventType.RESTART: Claim.ACTIVE,
}
_FINAL_CLAIMS = frozenset({Claim.COMPLETED, Claim.CANCELED, Claim.REJECTED})
_LIVE = frozenset({AssignmentState.OFFERED, AssignmentState.ACCEPTED})
_NO_FIELDS = WorkItemFields()


def derive_status(claim: Claim, queue: str | None, assignment: AssignmentState) -> Status:
    """Return the status an item is in, from its claim, queue and assignment state.

    >>> derive_status(Claim.ACTIVE, "q", AssignmentState.OFFERED).value
    'assigned'
    >>> derive_status(Claim.ACTIVE, None, AssignmentState.NONE).value
    'error_held'
    """
    if claim is Claim.COMPLETED:
        return Status.COMPLETED
    if claim is Claim.CANCELED:
        return Status.CANCELED
    if claim is Claim.REJECTED:
        return Status.REJECTED
    if claim is Claim.HELD:
        return Status.HELD
    if not queue:
        return Status.ERROR_HELD
    if assignment in _LIVE:
        return Status.ASSIGNED
    return Status.QUEUED


def stamp_of(event: LifecycleEvent) -> int:
    """Return the ordering stamp of a source event: its version, else occurred_at in us."""
    return event.version if event.version is not None else to_us(event.occurred_at)


def _latest_stamp(item: WorkItem, *, versioned: bool) -> int | None:
    """Return the newest stamp the item has seen from its source (version or occurred_at)."""
    if versioned:
        return item.last_version
    return to_us(item.last_occurred_at) if item.last_occurred_at is not None else None


def queue_entry(item: WorkItem, queue: str, seq: int) -> QueueEntry:
    """Build the queue entry the queues stage keeps for ``item`` in ``queue``.

    ``created_at`` of the entry is the age anchor: a restart makes the item young again.
    """
    f = item.fields
    # Every value comes from validated models: build without validating again (hot path).
    return _entry(
        tenant=item.tenant,
        capture_id=item.capture_id,
        queue=queue,
        priority=f.priority or 0,
        business_value=f.business_value or 0,
        created_at=item.restarted_at or item.created_at,
        enqueued_at=item.enqueued_at or item.updated_at,
        due_at=f.due_at,
        expire_at=f.expire_at,
        activate_at=f.activate_at,
        skills=list(f.skills or []),
        media_type=f.media_type,
        held=item.claim is Claim.HELD,
        excluded_resources=list(item.excluded_resources),
        reprioritization=dict(item.reprioritization),
        calendar=item.calendar,
        item_seq=seq,
        offer=None,
    )


def _entry(**values: Any) -> QueueEntry:
    return build(QueueEntry, values)


# ---------------------------------------------------------------------------------------------
# Helpers


def _record(
    item: WorkItem,
    event_id: str,
    event_type: str,
    outcome: HistoryOutcome,
    seq: int,
    at: datetime,
    now: datetime,
    *,
    from_status: Status | None,
    to_status: Status | None,
    assignment_state: AssignmentState,
    reason: str | None = None,
    detail: Mapping[str, AttrValue] | None = None,
) -> HistoryRecord:
    return build(
        HistoryRecord,
        dict(
            schema_version=1,
            tenant=item.tenant,
            capture_id=item.capture_id,
            seq=seq,
            event_id=event_id,
            event_type=event_type,
            outcome=outcome,
            from_status=from_status,
            to_status=to_status,
            assignment_state=assignment_state,
            at=at,
            recorded_at=now,
            reason=reason,
            detail=dict(detail or {}),
        ),
    )


def _not_applied(
    item: WorkItem,
    event_id: str,
    event_type: str,
    outcome: HistoryOutcome,
    at: datetime,
    now: datetime,
    reason: str,
) -> Outcome:
    rec = _record(
        item,
        event_id,
        event_type,
        outcome,
        item.seq,
        at,
        now,
        from_status=item.status,
        to_status=item.status,
        assignment_state=item.assignment_state,
        reason=reason,
    )
    return Outcome(item, outcome, (rec,), (), False)


def _seen(item: WorkItem, event_id: str) -> list[str]:
    ids = [*item.seen_event_ids, event_id]
    return ids[-SEEN_EVENT_IDS:]


def _command(
    item: WorkItem,
    op: QueueCommandOp,
    queue: str,
    seq: int,
    now: datetime,
    entry: QueueEntry | None = None,
    reason: str | None = None,
    release: str | None = None,
    return_capacity: bool = False,
) -> QueueCommand:
    return build(
        QueueCommand,
        dict(
            schema_version=1,
            op=op,
            # Deterministic: a replayed event re-sends the same command id, so it can be de-duplicated.
            command_id=f"{item_key(item.tenant, item.capture_id)}:{seq}:{op.value}:{queue}",
            tenant=item.tenant,
            queue=queue,
            capture_id=item.capture_id,
            item_seq=seq,
            entry=entry,
            reason=reason,
            issued_at=now,
            release_assignment_id=release,
            return_capacity=return_capacity,
        ),
    )


def _merge_fields(
    source: WorkItemFields, stamps: Mapping[str, int], patch: WorkItemFields, stamp: int
) -> tuple[WorkItemFields, dict[str, int], list[str]]:
    """Merge ``patch`` into ``source`` last-writer-wins per field; return what it changed.

    >>> a = WorkItemFields(priority=1, attributes={"x": 1})
    >>> new, st, changed = _merge_fields(a, {"priority": 5}, WorkItemFields(priority=2, attributes={"y": 2}), 3)
    >>> new.priority, new.attributes, changed
    (1, {'x': 1, 'y': 2}, ['attributes.y'])
    """
    values: dict[str, Any] = dict(source.__dict__)
    attributes: dict[str, AttrValue] = dict(source.attributes or {})
    new_stamps = dict(stamps)
    changed: list[str] = []
    for key in patch.model_fields_set:
        if key == "attributes":
            for name, value in (patch.attributes or {}).items():
                skey = f"attributes.{name}"
                old = new_stamps.get(skey)
                if old is None or stamp >= old:
                    if attributes.get(name) != value or name not in attributes or old != stamp:
                        changed.append(skey)
                    attributes[name] = value
                    new_stamps[skey] = stamp
            continue
        old = new_stamps.get(key)
        if old is None or stamp >= old:
            value = getattr(patch, key)
            if values[key] != value or old != stamp:
                changed.append(key)
            values[key] = value
            new_stamps[key] = stamp
    if not changed:
        return source, dict(stamps), []
    values["attributes"] = attributes or None
    merged = build(WorkItemFields, values, {k for k, v in values.items() if v is not None})
    return merged, new_stamps, changed


def _classify(item: WorkItem, rules: TenantRules, now: datetime) -> WorkItem:
    created_at = item.source.created_at or item.first_seen_at
    result = rules.classify(item.source, created_at)
    at_risk = result.reprioritization.get("at_risk_s")
    sla = sla_state(
        result.fields.due_at,
        result.fields.expire_at,
        timedelta(seconds=float(at_risk)) if isinstance(at_risk, int | float) else None,
        now,
    )
    return item.model_copy(
        update={
            "fields": result.fields,
            "created_at": created_at,
            "matched_rules": list(result.matched),
            "rules_version": rules.version,
            "reprioritization": result.reprioritization,
            "calendar": result.calendar,
            "sla_state": sla,
            "reason": result.error if result.error else item.reason,
        }
    )


def _desired_queue(item: WorkItem) -> str | None:
    # Held items keep their place (frozen); an accepted item is being worked, out of the queue.
    if item.claim not in (Claim.ACTIVE, Claim.HELD):
        return None
    if item.assignment_state is AssignmentState.ACCEPTED:
        return None
    return item.fields.queue or None


def _revoke(item: WorkItem, keep_accepted: bool = False) -> tuple[WorkItem, str | None]:
    """End a live offer (or acceptance) because the item moved under it; return the offer id.

    Completing or canceling an accepted item is the normal end of the work: ``keep_accepted``.
    """
    if item.assignment_state not in _LIVE:
        return item, None
    if keep_accepted and item.assignment_state is AssignmentState.ACCEPTED:
        return item, None
    released = item.assignment_id if item.assignment_state is AssignmentState.OFFERED else None
    return (
        item.model_copy(
            update={"assignment_state": AssignmentState.REVOKED, "offer_deadline": None}
        ),
        released,
    )


def _sync_queue(
    old: WorkItem,
    new: WorkItem,
    seq: int,
    now: datetime,
    release: str | None = None,
    return_capacity: bool = False,
) -> tuple[WorkItem, list[QueueCommand]]:
    """Return ``new`` with ``in_queue`` set and the commands that bring the queues in line."""
    want = _desired_queue(new)
    have = old.in_queue
    commands: list[QueueCommand] = []
    if have is not None and have != want:
        commands.append(
            _command(
                new,
                QueueCommandOp.REMOVE,
                have,
                seq,
                now,
                reason=new.status.value,
                release=release,
                return_capacity=return_capacity,
            )
        )
        release = None
    if want is not None:
        if have != want:
            new = new.model_copy(update={"in_queue": want, "enqueued_at": now})
            commands.append(
                _command(
                    new,
                    QueueCommandOp.ENQUEUE,
                    want,
                    seq,
                    now,
                    queue_entry(new, want, seq),
                    release=release,
                    return_capacity=return_capacity,
                )
            )
        else:
            entry = queue_entry(new, want, seq)
            if release is not None or entry != queue_entry(old, want, seq):
                commands.append(
                    _command(
                        new,
                        QueueCommandOp.UPDATE,
                        want,
                        seq,
                        now,
                        entry,
                        release=release,
                        return_capacity=return_capacity,
                    )
                )
    elif have is not None:
        new = new.model_copy(update={"in_queue": None})
    return new, commands


def _finish(
    old: WorkItem | None,
    new: WorkItem,
    event_id: str,
    event_type: str,
    at: datetime,
    now: datetime,
    commands: list[QueueCommand],
    *,
    outcome: HistoryOutcome = HistoryOutcome.APPLIED,
    rejection: Rejection | None = None,
    reason: str | None = None,
    detail: Mapping[str, AttrValue] | None = None,
    via: Status | None = None,
) -> Outcome:
    """Bump seq, remember the event id and write the history record(s)."""
    base = old.seq if old is not None else 0
    from_status = old.status if old is not None else None
    info = dict(detail or {})
    if rejection is not None:
        info["rejection"] = rejection.value
    records = []
    seq = base
    # A restart passes through `restarted` on its way back to new/queued: two records.
    for to_status in ([via] if via is not None else []) + [new.status]:
        seq += 1
        records.append(
            _record(
                new,
                event_id,
                event_type,
                outcome,
                seq,
                at,
                now,
                from_status=from_status,
                to_status=to_status,
                assignment_state=new.assignment_state,
                reason=reason,
                detail=info,
            )
        )
        from_status = to_status
    # Commands were built with the seq of the first record; the queues stage only needs order.
    final = new.model_copy(
        update={"seq": seq, "seen_event_ids": _seen(new, event_id), "updated_at": now}
    )
    return Outcome(final, outcome, tuple(records), tuple(commands), True, rejection)


# ---------------------------------------------------------------------------------------------
# Source events


def _blank(event: LifecycleEvent, now: datetime) -> WorkItem:
    return build(
        WorkItem,
        dict(
            schema_version=1,
            tenant=event.tenant,
            capture_id=event.capture_id,
            status=Status.NEW,
            assignment_state=AssignmentState.NONE,
            sla_state=SlaState.ON_TRACK,
            claim=Claim.ACTIVE,
            claim_stamp=None,
            final_stamp=None,
            source=_NO_FIELDS,
            fields=_NO_FIELDS,
            field_stamps={},
            seen_event_ids=[],
            last_version=None,
            last_occurred_at=None,
            seq=0,
            excluded_resources=[],
            past_offers=[],
            early_responses=[],
            assignment_id=None,
            assignment_queue=None,
            assigned_resource=None,
            offer_deadline=None,
            in_queue=None,
            created_at=event.occurred_at,
            first_seen_at=event.occurred_at,
            updated_at=now,
            enqueued_at=None,
            restarted_at=None,
            restarts=0,
            rules_version=None,
            matched_rules=[],
            reprioritization={},
            calendar=None,
            reason=None,
        ),
    )


def _apply_source(
    item: WorkItem | None, event: LifecycleEvent, rules: TenantRules, now: datetime
) -> Outcome:
    stamp = stamp_of(event)
    etype = event.type.value
    created = item is None
    old = item
    cur = _blank(event, now) if item is None else item

    if cur.claim is Claim.REJECTED or (cur.final_stamp is not None and stamp > cur.final_stamp):
        return _finish(
            old,
            cur,
            event.event_id,
            etype,
            event.occurred_at,
            now,
            [],
            outcome=HistoryOutcome.REJECTED,
            rejection=Rejection.ITEM_FINAL,
            reason=f"{etype} after the item was {cur.status.value}",
        )

    source, stamps, changed = _merge_fields(cur.source, cur.field_stamps, event.fields, stamp)
    first_seen = min(cur.first_seen_at, event.occurred_at)
    if first_seen != cur.first_seen_at:
        # An earlier event arriving late moves the item's creation time (its age) back.
        changed.append("first_seen_at")
    nxt = cur.model_copy(
        update={
            "source": source,
            "field_stamps": stamps,
            "first_seen_at": first_seen,
            "last_version": cur.last_version
            if event.version is None
            else max(event.version, cur.last_version if cur.last_version is not None else -1),
            "last_occurred_at": max(cur.last_occurred_at or event.occurred_at, event.occurred_at),
        }
    )

    claim = _CLAIMS.get(event.type)
    rejection: Rejection | None = None
    reason: str | None = None
    claim_applied = False
    restarted = False
    if claim is not None and (cur.claim_stamp is None or stamp >= cur.claim_stamp):
        if cur.claim in _FINAL_CLAIMS:
            rejection, reason = Rejection.ITEM_FINAL, f"{etype}: item is already {cur.status.value}"
        elif event.type is EventType.HOLD and cur.claim is Claim.HELD:
            rejection, reason = Rejection.ALREADY_HELD, "hold: item is already held"
        elif event.type is EventType.RESUME and cur.claim is not Claim.HELD:
            rejection, reason = Rejection.NOT_HELD, "resume: item is not held"
        else:
            claim_applied = True
            restarted = event.type is EventType.RESTART
        # Even a rejected claim is the source's latest word: an older claim arriving later must
        # not override it (that is what makes any arrival order end like version order).
        upd: dict[str, Any] = {"claim_stamp": stamp}
        if claim_applied:
            upd["claim"] = claim
            if claim in _FINAL_CLAIMS:
                upd["final_stamp"] = stamp
        nxt = nxt.model_copy(update=upd)

    if not created and not changed and not claim_applied and rejection is None:
        latest = _latest_stamp(cur, versioned=event.version is not None)
        if latest is not None and stamp < latest:
            return _not_applied(
                cur,
                event.event_id,
                etype,
                HistoryOutcome.STALE,
                event.occurred_at,
                now,
                f"{etype} (stamp {stamp}) is superseded: newer events already set what it carries",
            )
        return _not_applied(
            cur,
            event.event_id,
            etype,
            HistoryOutcome.UNCHANGED,
            event.occurred_at,
            now,
            f"{etype} (stamp {stamp}) carries nothing new",
        )

    release: str | None = None
    if restarted:
        nxt, release = _revoke(nxt)
        nxt = nxt.model_copy(
            update={
                "restarted_at": event.occurred_at,
                "restarts": cur.restarts + 1,
                "excluded_resources": [],
                "assignment_state": AssignmentState.NONE,
                "assignment_id": None,
                "assigned_resource": None,
                "assignment_queue": None,
                "reason": None,
            }
        )
    elif claim_applied and nxt.claim is not Claim.ACTIVE:
        # Hold or a final claim ends a live offer; a hold also takes the work from its resource.
        nxt, release = _revoke(nxt, keep_accepted=nxt.claim in _FINAL_CLAIMS)

    nxt = _classify(nxt, rules, now)
    if nxt.claim is Claim.ACTIVE and nxt.sla_state is SlaState.EXPIRED:
        nxt, rel = _revoke(nxt)
        release = release or rel
        nxt = nxt.model_copy(update={"claim": Claim.REJECTED, "reason": "expired"})
    if nxt.fields.queue != cur.fields.queue and nxt.assignment_state is AssignmentState.OFFERED:
        nxt, rel = _revoke(nxt)  # the item moved to another queue under a live offer
        release = release or rel
    nxt = nxt.model_copy(
        update={"status": derive_status(nxt.claim, nxt.fields.queue, nxt.assignment_state)}
    )
    if (
        nxt.status is not Status.ERROR_HELD
        and nxt.reason
        and nxt.reason.startswith("no classification")
    ):
        nxt = nxt.model_copy(update={"reason": None})
    nxt, commands = _sync_queue(
        cur, nxt, cur.seq + 1, now, release=release, return_capacity=release is not None
    )
    detail: dict[str, AttrValue] = {"stamp": stamp}
    if changed:
        detail["fields"] = ",".join(changed)
    if claim is not None and not claim_applied and rejection is None:
        detail["claim"] = "superseded"
    if created and event.type is not EventType.CREATE:
        detail["implicit_create"] = True
    if nxt.status is Status.ERROR_HELD:
        reason = reason or nxt.reason
    return _finish(
        old,
        nxt,
        event.event_id,
        etype,
        event.occurred_at,
        now,
        commands,
        outcome=HistoryOutcome.REJECTED if rejection else HistoryOutcome.APPLIED,
        rejection=rejection,
        reason=reason,
        detail=detail,
        via=Status.RESTARTED if restarted else None,
    )


# ---------------------------------------------------------------------------------------------
# Engine events: assigned / released / sla, and assignment responses


def _reject_engine(
    item: WorkItem,
    event_id: str,
    etype: str,
    at: datetime,
    now: datetime,
    rejection: Rejection,
    reason: str,
    commands: list[QueueCommand] | None = None,
) -> Outcome:
    return _finish(
        item,
        item,
        event_id,
        etype,
        at,
        now,
        commands or [],
        outcome=HistoryOutcome.REJECTED,
        rejection=rejection,
        reason=reason,
    )


def _apply_assigned(item: WorkItem, event: LifecycleEvent, now: datetime) -> Outcome:
    ref = event.assignment
    etype = event.type.value
    assert ref is not None
    if item.assignment_id == ref.assignment_id and item.assignment_state in _LIVE:
        return _not_applied(
            item,
            event.event_id,
            etype,
            HistoryOutcome.DUPLICATE,
            event.occurred_at,
            now,
            f"offer {ref.assignment_id} is already recorded",
        )
    detail: dict[str, AttrValue] = {
        "assignment_id": ref.assignment_id,
        "resource_id": ref.resource_id,
    }
    if (
        item.assignment_state is AssignmentState.OFFERED
        and item.claim is Claim.ACTIVE
        and item.in_queue == ref.queue
    ):
        # The queue offers only entries without a live offer, so it no longer holds the offer
        # this item recorded (it was lost with a crash between the two stages' writes). The
        # queue decides offers: the recorded one is superseded, or the two would loop forever.
        detail["superseded"] = item.assignment_id
        item = item.model_copy(
            update={
                "assignment_state": AssignmentState.REVOKED,
                "status": derive_status(item.claim, item.fields.queue, AssignmentState.REVOKED),
            }
        )
    problem: tuple[Rejection, str] | None = None
    if item.status is not Status.QUEUED:
        problem = (Rejection.NOT_QUEUED, f"offer {ref.assignment_id}: item is {item.status.value}")
    elif item.in_queue != ref.queue:
        problem = (
            Rejection.WRONG_QUEUE,
            f"offer {ref.assignment_id} from {ref.queue}; item is in {item.in_queue}",
        )
    if problem is not None:
        # Release the offer and give the capacity back; if the item does not belong in that
        # queue (any more), take it out, so the queue stops offering it.
        seq = item.seq + 1
        if _desired_queue(item) == ref.queue:
            command = _command(
                item,
                QueueCommandOp.UPDATE,
                ref.queue,
                seq,
                now,
                queue_entry(item, ref.queue, seq),
                reason=problem[0].value,
                release=ref.assignment_id,
                return_capacity=True,
            )
        else:
            command = _command(
                item,
                QueueCommandOp.REMOVE,
                ref.queue,
                seq,
                now,
                reason=problem[0].value,
                release=ref.assignment_id,
                return_capacity=True,
            )
        return _reject_engine(
            item, event.event_id, etype, event.occurred_at, now, *problem, [command]
        )
    nxt = item.model_copy(
        update={
            "assignment_state": AssignmentState.OFFERED,
            "assignment_id": ref.assignment_id,
            "assignment_queue": ref.queue,
            "assigned_resource": ref.resource_id,
            "offer_deadline": ref.offer_deadline,
            "status": Status.ASSIGNED,
            "past_offers": [*item.past_offers, ref.assignment_id][-PAST_OFFERS:],
        }
    )
    first = _finish(item, nxt, event.event_id, etype, event.occurred_at, now, [], detail=detail)
    early = next((r for r in nxt.early_responses if r.assignment_id == ref.assignment_id), None)
    if early is None or first.item is None:
        return first
    # The routing consumer answered before this offer reached the item: apply its answer now.
    waiting = [r for r in first.item.early_responses if r is not early]
    # Its id was remembered when it was deferred; forget it so it is not taken for a repeat.
    seen = [i for i in first.item.seen_event_ids if i != early.response_id]
    ready = first.item.model_copy(update={"early_responses": waiting, "seen_event_ids": seen})
    second = _apply_response(ready, early, now)
    return Outcome(
        second.item,
        first.result,
        first.history + second.history,
        first.commands + second.commands,
        True,
        second.rejection,
    )


def _release(
    item: WorkItem,
    assignment_id: str,
    state: AssignmentState,
    resource_id: str | None,
    event_id: str,
    etype: str,
    at: datetime,
    now: datetime,
    reason: str | None,
    *,
    remove: bool = False,
) -> Outcome:
    """End the live offer ``assignment_id``: accepted (remove from queue) or released (requeue)."""
    if item.assignment_id != assignment_id or item.assignment_state is not AssignmentState.OFFERED:
        return _reject_engine(
            item,
            event_id,
            etype,
            at,
            now,
            Rejection.OFFER_NOT_LIVE,
            f"{etype}: offer {assignment_id} is not the live offer "
            f"(live: {item.assignment_id if item.assignment_state is AssignmentState.OFFERED else 'none'})",
        )
    update: dict[str, Any] = {"assignment_state": state, "offer_deadline": None}
    resource = resource_id or item.assigned_resource
    if not remove and resource and resource not in item.excluded_resources:
        update["excluded_resources"] = [*item.excluded_resources, resource]
    nxt = item.model_copy(update=update)
    nxt = nxt.model_copy(update={"status": derive_status(nxt.claim, nxt.fields.queue, state)})
    nxt, commands = _sync_queue(item, nxt, item.seq + 1, now, release=assignment_id)
    return _finish(
        item,
        nxt,
        event_id,
        etype,
        at,
        now,
        commands,
        reason=reason,
        detail={"assignment_id": assignment_id, "resource_id": resource},
    )


_RELEASE_STATES = frozenset(
    {AssignmentState.DECLINED, AssignmentState.TIMED_OUT, AssignmentState.REVOKED}
)


def _apply_sla(item: WorkItem, event: LifecycleEvent, now: datetime) -> Outcome:
    etype = event.type.value
    if item.status in FINAL_STATUSES:
        # The clock ran on for an item that has just ended: nothing to record.
        return _not_applied(
            item,
            event.event_id,
            etype,
            HistoryOutcome.UNCHANGED,
            event.occurred_at,
            now,
            f"sla: item is {item.status.value}",
        )
    policy = Reprioritization.from_dict(item.reprioritization)
    # The item's own fields decide: an update may have moved due/expiry since the tick was sent.
    state = sla_state(item.fields.due_at, item.fields.expire_at, policy.at_risk, event.occurred_at)
    if state is item.sla_state:
        return _not_applied(
            item,
            event.event_id,
            etype,
            HistoryOutcome.UNCHANGED,
            event.occurred_at,
            now,
            f"sla is already {state.value}",
        )
    nxt = item.model_copy(update={"sla_state": state})
    commands: list[QueueCommand] = []
    release = None
    if state is SlaState.EXPIRED:
        nxt, release = _revoke(nxt)
        nxt = nxt.model_copy(update={"claim": Claim.REJECTED, "reason": "expired"})
        nxt = nxt.model_copy(update={"status": Status.REJECTED})
        nxt, commands = _sync_queue(
            item, nxt, item.seq + 1, now, release=release, return_capacity=release is not None
        )
    detail: dict[str, AttrValue] = {"sla_state": state.value}
    if event.sla_state is not None and event.sla_state is not state:
        detail["reported"] = event.sla_state.value
    return _finish(
        item,
        nxt,
        event.event_id,
        etype,
        event.occurred_at,
        now,
        commands,
        reason="expired" if state is SlaState.EXPIRED else None,
        detail=detail,
    )


def _apply_response(item: WorkItem | None, resp: AssignmentResponse, now: datetime) -> Outcome:
    etype = f"response.{resp.outcome.value}"
    if item is None:
        return _unknown_item(
            resp.tenant,
            resp.capture_id,
            resp.response_id,
            etype,
            resp.occurred_at,
            now,
            f"no item {resp.capture_id}",
        )
    if resp.response_id in item.seen_event_ids:
        return _not_applied(
            item,
            resp.response_id,
            etype,
            HistoryOutcome.DUPLICATE,
            resp.occurred_at,
            now,
            "response already applied",
        )
    live = (
        item.assignment_state is AssignmentState.OFFERED
        and item.assignment_id == resp.assignment_id
    )
    if not live and resp.assignment_id not in item.past_offers and item.claim not in _FINAL_CLAIMS:
        # An answer to an offer this item has not heard of yet: the offer's `assigned` event
        # travels on another topic and may arrive after the answer. Keep it for that offer.
        nxt = item.model_copy(
            update={"early_responses": [*item.early_responses, resp][-EARLY_RESPONSES:]}
        )
        return _finish(
            item,
            nxt,
            resp.response_id,
            etype,
            resp.occurred_at,
            now,
            [],
            outcome=HistoryOutcome.DEFERRED,
            reason=f"offer {resp.assignment_id} not recorded yet",
            detail={"assignment_id": resp.assignment_id},
        )
    if resp.outcome is ResponseOutcome.ACCEPTED:
        return _release(
            item,
            resp.assignment_id,
            AssignmentState.ACCEPTED,
            resp.resource_id,
            resp.response_id,
            etype,
            resp.occurred_at,
            now,
            resp.reason,
            remove=True,
        )
    state = (
        AssignmentState.DECLINED
        if resp.outcome is ResponseOutcome.DECLINED
        else AssignmentState.TIMED_OUT
    )
    return _release(
        item,
        resp.assignment_id,
        state,
        resp.resource_id,
        resp.response_id,
        etype,
        resp.occurred_at,
        now,
        resp.reason,
    )


def _unknown_item(
    tenant: str,
    capture_id: str,
    event_id: str,
    etype: str,
    at: datetime,
    now: datetime,
    reason: str,
) -> Outcome:
    """Refuse an engine event or response for an item that does not exist (nothing stored)."""
    rec = _record(
        _ghost(tenant, capture_id, at, now),
        event_id,
        etype,
        HistoryOutcome.REJECTED,
        0,
        at,
        now,
        from_status=None,
        to_status=None,
        assignment_state=AssignmentState.NONE,
        reason=reason,
        detail={"rejection": Rejection.UNKNOWN_ITEM.value},
    )
    return Outcome(None, HistoryOutcome.REJECTED, (rec,), (), False, Rejection.UNKNOWN_ITEM)


def _ghost(tenant: str, capture_id: str, at: datetime, now: datetime) -> WorkItem:
    ev = LifecycleEvent.model_construct(tenant=tenant, capture_id=capture_id, occurred_at=at)
    return _blank(ev, now)


# ---------------------------------------------------------------------------------------------
# The entry point


def apply(
    item: WorkItem | None,
    event: LifecycleEvent | AssignmentResponse,
    rules: TenantRules,
    now: datetime,
) -> Outcome:
    """Apply one event to an item's state; never raises for a bad transition.

    ``item`` is the stored state (None when the key is new), ``rules`` the tenant's rules and
    ``now`` the processing time (history ``recorded_at``, ``enqueued_at``, SLA evaluation).
    The caller writes ``outcome.item`` back when ``outcome.changed``, sends
    ``outcome.history`` to the history topic and ``outcome.commands`` to the queue commands
    topic (each keyed ``tenant/queue``).

    >>> from datetime import UTC
    >>> from iwd_stream.domain.rules import parse_rules
    >>> rules = parse_rules("rules_version: 1\\ndefaults: {queue: general, priority: 5}")
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> ev = LifecycleEvent(type=EventType.CREATE, event_id="e1", tenant="acme",
    ...                     capture_id="C1", source="crm", occurred_at=t, version=1)
    >>> out = apply(None, ev, rules, t)
    >>> out.item.status.value, [c.op.value for c in out.commands], out.history[0].to_status.value
    ('queued', ['enqueue'], 'queued')
    >>> apply(out.item, ev, rules, t).result.value     # the same event again
    'duplicate'
    """
    if isinstance(event, AssignmentResponse):
        if item is not None and item.tenant != event.tenant:
            return _reject_engine(
                item,
                event.response_id,
                "response",
                event.occurred_at,
                now,
                Rejection.TENANT_MISMATCH,
                f"response for tenant {event.tenant}",
            )
        return _apply_response(item, event, now)
    etype = event.type.value
    if item is not None:
        if item.tenant != event.tenant or item.capture_id != event.capture_id:
            return _reject_engine(
                item,
                event.event_id,
                etype,
                event.occurred_at,
                now,
                Rejection.TENANT_MISMATCH,
                f"event for {event.key} applied to {item.key}",
            )
        if event.event_id in item.seen_event_ids:
            return _not_applied(
                item,
                event.event_id,
                etype,
                HistoryOutcome.DUPLICATE,
                event.occurred_at,
                now,
                f"event {event.event_id} already applied",
            )
    if event.type in _SOURCE:
        return _apply_source(item, event, rules, now)
    if item is None:
        return _unknown_item(
            event.tenant,
            event.capture_id,
            event.event_id,
            etype,
            event.occurred_at,
            now,
            f"{etype}: no item {event.capture_id}",
        )
    if event.type is EventType.ASSIGNED:
        if event.assignment is None or event.assignment.outcome is not AssignmentState.OFFERED:
            return _reject_engine(
                item,
                event.event_id,
                etype,
                event.occurred_at,
                now,
                Rejection.BAD_EVENT,
                "assigned needs an assignment with outcome offered",
            )
        return _apply_assigned(item, event, now)
    if event.type is EventType.RELEASED:
        ref = event.assignment
        if ref is None or ref.outcome not in _RELEASE_STATES:
            return _reject_engine(
                item,
                event.event_id,
                etype,
                event.occurred_at,
                now,
                Rejection.BAD_EVENT,
                "released needs an assignment with outcome declined, timed_out or revoked",
            )
        return _release(
            item,
            ref.assignment_id,
            ref.outcome,
            ref.resource_id,
            event.event_id,
            etype,
            event.occurred_at,
            now,
            event.reason,
        )
    return _apply_sla(item, event, now)


_SOURCE = frozenset(
    {
        EventType.CREATE,
        EventType.UPDATE,
        EventType.COMPLETE,
        EventType.CANCEL,
        EventType.HOLD,
        EventType.RESUME,
        EventType.RESTART,
    }
)


def assigned_event(
    tenant: str,
    capture_id: str,
    assignment_id: str,
    queue: str,
    resource_id: str | None,
    offer_deadline: datetime,
    score: float,
    now: datetime,
) -> LifecycleEvent:
    """Build the internal ``assigned`` event the queues stage sends back to the item."""
    return LifecycleEvent(
        type=EventType.ASSIGNED,
        event_id=f"{assignment_id}:offered",
        tenant=tenant,
        capture_id=capture_id,
        source=ENGINE_SOURCE,
        occurred_at=now,
        assignment=AssignmentRef(
            assignment_id=assignment_id,
            queue=queue,
            resource_id=resource_id,
            outcome=AssignmentState.OFFERED,
            offer_deadline=offer_deadline,
            score=score,
        ),
    )


def released_event(
    tenant: str,
    capture_id: str,
    assignment_id: str,
    queue: str,
    resource_id: str | None,
    outcome: AssignmentState,
    now: datetime,
    reason: str | None = None,
) -> LifecycleEvent:
    """Build the internal ``released`` event (timed_out / revoked offer) for the item."""
    return LifecycleEvent(
        type=EventType.RELEASED,
        event_id=f"{assignment_id}:{outcome.value}",
        tenant=tenant,
        capture_id=capture_id,
        source=ENGINE_SOURCE,
        occurred_at=now,
        reason=reason,
        assignment=AssignmentRef(
            assignment_id=assignment_id, queue=queue, resource_id=resource_id, outcome=outcome
        ),
    )


def sla_event(tenant: str, capture_id: str, state: SlaState, now: datetime) -> LifecycleEvent:
    """Build the internal ``sla`` event for an SLA state change seen by the queues stage."""
    return LifecycleEvent(
        type=EventType.SLA,
        event_id=f"sla:{tenant}/{capture_id}:{state.value}:{to_us(now)}",
        tenant=tenant,
        capture_id=capture_id,
        source=ENGINE_SOURCE,
        occurred_at=now,
        sla_state=state,
    )


def item_queue_key(item: WorkItem) -> str | None:
    """Return the ``tenant/queue`` key of the queue holding the item (None when in none)."""
    return queue_key(item.tenant, item.in_queue) if item.in_queue else None
