"""The workitems stage's processor: lifecycle events and assignment responses → item state.

No Faust here. Each raw message is decoded (failures go to the dead-letter topic with the
original bytes), handed to the domain state machine, and the resulting item state, history
records and queue commands come back as a :class:`Result` for the agent to write and send.

The table value is an envelope around the domain's item: the item itself, the tail of its
history and the queue commands of its last transition. The envelope is what makes replay
after a crash safe: the table's changelog and the outbox are flushed separately, so a
worker killed between the two restarts from the last committed offset with a table that may
already hold the effects of the replayed events. The domain then sees them as duplicates,
and this stage re-sends the history records of that event and the item's latest queue
commands, which downstream consumers apply idempotently (history by ``seq``, queue commands by
``item_seq``). Nothing is lost and nothing is applied twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from iwd_stream.contracts import (
    SOURCE_EVENT_TYPES,
    AssignmentResponse,
    EventType,
    HistoryOutcome,
    HistoryRecord,
    LifecycleEvent,
    QueueCommand,
    SlaState,
    Status,
    WorkItem,
    decode,
    encode,
    item_key,
    queue_key,
)
from iwd_stream.domain.workitem import ENGINE_SOURCE, apply
from iwd_stream.errors import DecodeError
from iwd_stream.observability.metrics import Metrics
from iwd_stream.streaming.results import Output, Result, dead_letter, revoked_notice
from iwd_stream.topics import TopicNames

STAGE = "workitems"


class Origin(NamedTuple):
    """Where the message being processed came from (for its dead-letter record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


HISTORY_TAIL = 100


def _repeats_the_end(event: LifecycleEvent, item: WorkItem) -> bool:
    """True when a final event asks for the final status the item already has.

    Two parties may complete the same work (the source closes the incident, the employee
    completes the task): the second is refused and recorded, but it is not bad input.
    """
    return (event.type is EventType.COMPLETE and item.status is Status.COMPLETED) or (
        event.type is EventType.CANCEL and item.status is Status.CANCELED
    )


class WorkitemsProcessor:
    """Apply lifecycle events and assignment responses to the items of owned partitions."""

    def __init__(self, *, rules: Any, names: TopicNames, metrics: Metrics) -> None:
        self.rules = rules
        self.names = names
        self.metrics = metrics

    def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        get: Callable[[bytes], bytes | None],
        now: datetime,
    ) -> Result:
        result = Result()
        try:
            message: LifecycleEvent | AssignmentResponse
            if topic == self.names.responses:
                message = decode(value, AssignmentResponse)
            else:
                message = decode(value, LifecycleEvent)
            expected = item_key(message.tenant, message.capture_id).encode()
            if key is None:
                # Without the key the message sits on a random partition, away from its item.
                raise DecodeError("no_key", f"message has no key; expected {expected!r}")
            if key != expected:
                raise DecodeError("key_mismatch", f"message key {key!r} is not {expected!r}")
            if (
                isinstance(message, LifecycleEvent)
                and message.type not in SOURCE_EVENT_TYPES
                and message.source != ENGINE_SOURCE
            ):
                raise DecodeError(
                    "internal_type",
                    f"{message.type.value} events come from the engine only (source {ENGINE_SOURCE!r})",
                )
            if message.tenant not in self.rules:
                raise DecodeError("unknown_tenant", f"no rules for tenant {message.tenant!r}")
            origin = Origin(topic, partition, offset, key, value)
            self._apply(expected, message, get(expected), now, result, origin)
        except DecodeError as exc:
            self.metrics.deadlettered.labels(STAGE, exc.reason).inc()
            result.outputs.append(
                dead_letter(self.names, STAGE, exc, topic, partition, offset, key, value, now)
            )
        return result

    def _apply(
        self,
        key: bytes,
        message: LifecycleEvent | AssignmentResponse,
        stored: bytes | None,
        now: datetime,
        result: Result,
        origin: Origin,
    ) -> None:
        envelope = orjson.loads(stored) if stored is not None else None
        item = WorkItem.model_validate(envelope["item"], strict=False) if envelope else None
        is_source = isinstance(message, LifecycleEvent) and message.type in SOURCE_EVENT_TYPES
        kind = (
            message.type.value
            if isinstance(message, LifecycleEvent)
            else f"response.{message.outcome.value}"
        )
        if (
            item is None
            and isinstance(message, LifecycleEvent)
            and is_source
            and message.type is not EventType.CREATE
        ):
            # Kafka keeps one item's events in order, so this is not a reordering: the source
            # never created the item. Keep the input, with the reason, instead of guessing.
            self._reject_input(origin, "unknown_item", f"{kind} before create", now, result)
            self.metrics.events.labels(STAGE, kind, "rejected").inc()
            return
        outcome = apply(item, message, self.rules.get(message.tenant), now)
        self.metrics.events.labels(STAGE, kind, outcome.result.value).inc()
        event_id = message.event_id if isinstance(message, LifecycleEvent) else message.response_id

        if not outcome.changed:
            if envelope is not None and outcome.result is HistoryOutcome.DUPLICATE:
                self._resend(key, envelope, event_id, result)
            elif outcome.item is None:
                # An answer (or an engine event) for an item that does not exist.
                reason = outcome.rejection.value if outcome.rejection else "rejected"
                self._reject_input(origin, reason, outcome.history[0].reason or "", now, result)
            return
        assert outcome.item is not None
        if (
            outcome.result is HistoryOutcome.REJECTED
            and outcome.rejection is not None
            and isinstance(message, LifecycleEvent)
            and is_source
            and message.type is not EventType.UPDATE
            and not _repeats_the_end(message, outcome.item)
        ):
            # A lifecycle transition the state machine refuses (hold of a completed item,
            # resume of an active one) is bad input from that source: recorded in the item's
            # history and kept in the dead letters. An update of a finished item is not: sources
            # such as ServiceNow keep editing resolved records; the history records it, ignored.
            self._reject_input(
                origin, outcome.rejection.value, outcome.history[-1].reason or "", now, result
            )
        self._count(outcome.item, message, outcome.result, envelope)
        history = [h.model_dump(mode="json") for h in outcome.history]
        tail = (envelope["history"] if envelope else []) + history
        commands = [c.model_dump(mode="json") for c in outcome.commands]
        new_envelope = {
            "item": outcome.item.model_dump(mode="json"),
            "history": tail[-HISTORY_TAIL:],
            "commands": commands if commands else (envelope["commands"] if envelope else []),
        }
        result.writes.append((key, orjson.dumps(new_envelope)))
        for record in outcome.history:
            result.outputs.append(Output(self.names.history, key, encode(record)))
            superseded = record.detail.get("superseded")
            if isinstance(superseded, str) and envelope is not None:
                # The queue lost this offer in a crash and made a new one; the routing consumer
                # that received the old one must drop it.
                before = envelope["item"]
                result.outputs.append(
                    revoked_notice(
                        self.names,
                        outcome.item.tenant,
                        before.get("assignment_queue") or outcome.item.in_queue or "unknown",
                        outcome.item.capture_id,
                        superseded,
                        before.get("assigned_resource"),
                        now,
                    )
                )
        for cmd in outcome.commands:
            result.outputs.append(self._command_output(cmd))

    def _count(
        self,
        item: WorkItem,
        message: LifecycleEvent | AssignmentResponse,
        outcome: HistoryOutcome,
        envelope: dict[str, Any] | None,
    ) -> None:
        if outcome is not HistoryOutcome.APPLIED:
            return
        if isinstance(message, AssignmentResponse):
            self.metrics.assignments.labels(item.tenant, message.outcome.value).inc()
        # Any applied event can move the SLA state (an update moves due_at; an item may be
        # created already late): count the transition wherever it happens.
        before = envelope["item"]["sla_state"] if envelope else SlaState.ON_TRACK.value
        if item.sla_state.value != before and item.sla_state is not SlaState.ON_TRACK:
            self.metrics.sla_transitions.labels(item.tenant, item.sla_state.value).inc()
            if item.sla_state is SlaState.BREACHED:
                self.metrics.sla_breaches.labels(item.tenant).inc()

    def _reject_input(
        self, origin: Origin, reason: str, explanation: str, now: datetime, result: Result
    ) -> None:
        """Send a valid-but-refused input to the dead letters, with its original bytes."""
        self.metrics.deadlettered.labels(STAGE, reason).inc()
        exc = DecodeError(reason, explanation)
        result.outputs.append(dead_letter(self.names, STAGE, exc, *origin, now))

    def _resend(self, key: bytes, envelope: dict[str, Any], event_id: str, result: Result) -> None:
        for raw in envelope["history"]:
            if raw.get("event_id") == event_id:
                record = HistoryRecord.model_validate(raw, strict=False)
                result.outputs.append(Output(self.names.history, key, encode(record)))
        for raw in envelope["commands"]:
            result.outputs.append(
                self._command_output(QueueCommand.model_validate(raw, strict=False))
            )

    def _command_output(self, cmd: QueueCommand) -> Output:
        return Output(
            self.names.queue_commands, queue_key(cmd.tenant, cmd.queue).encode(), encode(cmd)
        )

    def describe(self, stored: bytes) -> dict[str, Any]:
        """Return the query API's view of a stored item: state, history tail."""
        envelope = orjson.loads(stored)
        body = dict(envelope["item"])
        body["history"] = envelope["history"]
        return body
