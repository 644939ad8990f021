"""Wire contracts: every message iwd-stream reads from or writes to Kafka.

All models are strict (no silent coercion), reject unknown fields, are immutable, and carry a
``schema_version``. A message whose ``schema_version`` is newer than this build understands is
rejected (it goes to the dead-letter topic) rather than half-read.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1

Tenant = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
CaptureId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^/\s][^/]*$")]
QueueName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^/]+$")]
EventId = Annotated[str, Field(min_length=1, max_length=200)]
AttrValue = str | int | float | bool | None

MIN_YEAR, MAX_YEAR = 1900, 2999


def _plausible(value: datetime) -> datetime:
    # Work items live in years, not millennia: year 1 or 9999 breaks due-time arithmetic
    # (due - at_risk, due + expiry) far downstream, so such input is refused at the door.
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year {value.year} is outside {MIN_YEAR}..{MAX_YEAR}")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_plausible)]


class Part(BaseModel):
    """Base of every wire model and of the parts nested in them: strict, closed, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Contract(Part):
    """Base of every top-level wire message: a Part with a ``schema_version``."""

    schema_version: int = SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value < 1 or value > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value} is not supported (this build reads 1..{SCHEMA_VERSION})"
            )
        return value


class EventType(StrEnum):
    """Lifecycle events: the capture-point messages plus the engine's internal ones."""

    CREATE = "create"
    UPDATE = "update"
    COMPLETE = "complete"
    CANCEL = "cancel"
    HOLD = "hold"
    RESUME = "resume"
    RESTART = "restart"
    # Internal: emitted by the queues stage back to the item.
    ASSIGNED = "assigned"
    RELEASED = "released"
    SLA = "sla"


SOURCE_EVENT_TYPES = frozenset(
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


class Status(StrEnum):
    """Business lifecycle status of a work item."""

    NEW = "new"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    COMPLETED = "completed"
    HELD = "held"
    CANCELED = "canceled"
    REJECTED = "rejected"
    ERROR_HELD = "error_held"
    RESTARTED = "restarted"


FINAL_STATUSES = frozenset({Status.COMPLETED, Status.CANCELED, Status.REJECTED})


class AssignmentState(StrEnum):
    """State of the current (or last) offer of an item, kept apart from its status."""

    NONE = "none"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TIMED_OUT = "timed_out"
    REVOKED = "revoked"


class SlaState(StrEnum):
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    BREACHED = "breached"
    EXPIRED = "expired"


class WorkItemFields(Part):
    """Work-item attributes (Genesys iWD names). On ``update`` only the changed ones are set."""

    priority: int | None = None
    business_value: int | None = None
    category: str | None = None
    department: str | None = None
    process: str | None = None
    queue: QueueName | None = None
    media_type: str | None = None
    channel: str | None = None
    skills: list[str] | None = None
    created_at: Timestamp | None = None
    activate_at: Timestamp | None = None
    due_at: Timestamp | None = None
    expire_at: Timestamp | None = None
    customer_segment: str | None = None
    attributes: dict[str, AttrValue] | None = None

    def set_fields(self) -> dict[str, object]:
        """Return only the fields the sender set (the patch an ``update`` carries)."""
        return {k: getattr(self, k) for k in self.model_fields_set}


class AssignmentRef(Part):
    """Which offer an internal ``assigned`` / ``released`` event is about."""

    assignment_id: str
    queue: QueueName
    resource_id: str | None = None
    outcome: AssignmentState
    offer_deadline: AwareDatetime | None = None
    score: float | None = None


class LifecycleEvent(Contract):
    """A work-item lifecycle event, keyed ``tenant/capture_id`` on ``iwd.workitem.events``."""

    type: EventType
    event_id: EventId
    tenant: Tenant
    capture_id: CaptureId
    source: str = Field(min_length=1, max_length=100)
    occurred_at: Timestamp
    version: int | None = Field(default=None, ge=0)
    fields: WorkItemFields = WorkItemFields()
    reason: str | None = Field(default=None, max_length=1000)
    assignment: AssignmentRef | None = None
    sla_state: SlaState | None = None

    @property
    def key(self) -> str:
        return item_key(self.tenant, self.capture_id)


class ResourceOffer(Part):
    """A resource (employee) that can take work now."""

    resource_id: str = Field(min_length=1, max_length=200)
    skills: list[str] = []
    media_types: list[str] = []
    slots: int = Field(default=1, ge=1, le=1000)


class Offer(Part):
    """The live offer of a queue entry: set by dispatch, cleared when the offer is released.

    It is part of the queue entry (so it survives a restart of the queues stage) and carries
    the resource that was offered, so that a revoked offer can give its capacity back.
    """

    assignment_id: str
    capacity_id: str
    resource_id: str | None = None
    resource: ResourceOffer | None = None
    offered_at: AwareDatetime
    offer_deadline: AwareDatetime


class QueueEntry(Part):
    """What the queues stage knows about one queued item: enough to score and dispatch it."""

    tenant: Tenant
    capture_id: CaptureId
    queue: QueueName
    priority: int
    business_value: int = 0
    created_at: AwareDatetime
    enqueued_at: AwareDatetime
    due_at: AwareDatetime | None = None
    expire_at: AwareDatetime | None = None
    activate_at: AwareDatetime | None = None
    skills: list[str] = []
    media_type: str | None = None
    held: bool = False
    excluded_resources: list[str] = []
    # Re-prioritisation policy, resolved by the workitems stage from the tenant's rules.
    reprioritization: dict[str, object] = {}
    calendar: str | None = None
    item_seq: int = 0
    # Set by the queues stage while the item is offered; never by the workitems stage.
    offer: Offer | None = None


class QueueCommandOp(StrEnum):
    ENQUEUE = "enqueue"
    UPDATE = "update"
    REMOVE = "remove"


class QueueCommand(Contract):
    """Workitems stage → queues stage, keyed ``tenant/queue`` on ``iwd.queue.commands``."""

    op: QueueCommandOp
    command_id: str
    tenant: Tenant
    queue: QueueName
    capture_id: CaptureId
    item_seq: int = Field(ge=0)
    entry: QueueEntry | None = None
    reason: str | None = None
    issued_at: AwareDatetime
    # The offer this command ends (declined, timed out, revoked). An entry's live offer is kept
    # across commands that do not name it, so a command raced by a dispatch cannot re-open it.
    release_assignment_id: str | None = None
    # True when the released offer never reached work (revoked): the resource is free again.
    return_capacity: bool = False


class SlaTick(Contract):
    """Timer → queues stage; sent to one partition of ``iwd.queue.ticks``."""

    tick_id: str
    partition: int = Field(ge=0)
    tick_at: AwareDatetime
    worker: str | None = None


class Capacity(Contract):
    """Routing consumer → queues stage, keyed ``tenant/queue`` on ``iwd.capacity``."""

    capacity_id: str = Field(min_length=1, max_length=200)
    tenant: Tenant
    queue: QueueName
    credits: int = Field(default=1, ge=1, le=10_000)
    resource: ResourceOffer | None = None
    occurred_at: Timestamp


class ScoreTerm(Part):
    name: str
    value: float
    detail: str = ""


class Assignment(Contract):
    """Queues stage → routing consumers on ``iwd.assignments`` (keyed ``tenant/queue``)."""

    assignment_id: str
    capacity_id: str
    tenant: Tenant
    queue: QueueName
    capture_id: CaptureId
    resource_id: str | None = None
    offered_at: AwareDatetime
    offer_deadline: AwareDatetime
    score: float
    breakdown: list[ScoreTerm]
    priority: int
    business_value: int
    sla_state: SlaState
    due_at: AwareDatetime | None = None
    skills: list[str] = []
    media_type: str | None = None
    # "revoked": the item ended at the source while offered; the routing consumer drops it.
    status: Literal["offered", "revoked"] = "offered"


class ResponseOutcome(StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TIMED_OUT = "timed_out"


class AssignmentResponse(Contract):
    """Routing consumer → workitems stage on ``iwd.assignment.responses`` (key tenant/capture_id)."""

    response_id: str = Field(min_length=1, max_length=200)
    assignment_id: str
    tenant: Tenant
    capture_id: CaptureId
    queue: QueueName
    resource_id: str | None = None
    outcome: ResponseOutcome
    reason: str | None = None
    occurred_at: Timestamp


class HistoryOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # the same event_id again
    STALE = "stale"  # older than what already set every field it carries
    UNCHANGED = "unchanged"  # in order, but carries nothing new (e.g. a no-change source row)
    DEFERRED = "deferred"  # a response that arrived before its offer; applied with the offer
    REJECTED = "rejected"


class HistoryRecord(Contract):
    """One entry of an item's audit trail on ``iwd.workitem.history`` (key tenant/capture_id)."""

    tenant: Tenant
    capture_id: CaptureId
    seq: int = Field(ge=0)
    event_id: str
    event_type: str
    outcome: HistoryOutcome
    from_status: Status | None = None
    to_status: Status | None = None
    assignment_state: AssignmentState = AssignmentState.NONE
    at: AwareDatetime
    recorded_at: AwareDatetime
    reason: str | None = None
    detail: dict[str, AttrValue] = {}


class DeadLetter(Contract):
    """A rejected input on ``iwd.deadletter``: the original bytes, why, and where it came from."""

    reason: str
    error: str
    topic: str
    partition: int | None = None
    offset: int | None = None
    key_b64: str | None = None
    original_b64: str
    original_size: int
    stage: str
    at: AwareDatetime
    # An input too big to re-publish whole keeps its first bytes here; the full message stays
    # at topic/partition/offset (and its digest says which it was).
    original_truncated: bool = False
    original_sha256: str | None = None


class Claim(StrEnum):
    """What the source last said about an item's lifecycle, apart from the engine's own state.

    The status is derived from the claim, the classification and the assignment state, so
    that out-of-order source events settle on the same status whatever order they arrive in.
    """

    ACTIVE = "active"
    HELD = "held"
    COMPLETED = "completed"
    CANCELED = "canceled"
    REJECTED = "rejected"


class WorkItem(Contract):
    """The stored state of one work item (table ``workitems``, key ``tenant/capture_id``).

    ``source`` is the source's own view merged over all its events (last writer wins per field
    by ``version``, or by ``occurred_at`` when the source sends no version); ``fields`` is what
    the tenant's rules made of it (classification and prioritisation).
    """

    tenant: Tenant
    capture_id: CaptureId
    status: Status
    assignment_state: AssignmentState = AssignmentState.NONE
    sla_state: SlaState = SlaState.ON_TRACK
    claim: Claim = Claim.ACTIVE
    claim_stamp: int | None = None
    final_stamp: int | None = None
    source: WorkItemFields = WorkItemFields()
    fields: WorkItemFields = WorkItemFields()
    # Stamp (version, or occurred_at in microseconds) of the event that last set each source
    # field; attributes are keyed "attributes.<name>".
    field_stamps: dict[str, int] = {}
    seen_event_ids: list[str] = []
    last_version: int | None = None
    last_occurred_at: AwareDatetime | None = None
    seq: int = Field(default=0, ge=0)
    excluded_resources: list[str] = []
    # Offers this item has had (bounded): a response naming one of them and not the live one
    # is late; a response naming an offer never seen is early and waits here for its offer.
    past_offers: list[str] = []
    early_responses: list[AssignmentResponse] = []
    assignment_id: str | None = None
    assignment_queue: QueueName | None = None
    assigned_resource: str | None = None
    offer_deadline: AwareDatetime | None = None
    # The queue that holds an entry for this item (None when it is in no queue).
    in_queue: QueueName | None = None
    created_at: AwareDatetime
    first_seen_at: AwareDatetime
    updated_at: AwareDatetime
    enqueued_at: AwareDatetime | None = None
    restarted_at: AwareDatetime | None = None
    restarts: int = Field(default=0, ge=0)
    rules_version: str | None = None
    matched_rules: list[str] = []
    reprioritization: dict[str, object] = {}
    calendar: str | None = None
    reason: str | None = None

    @property
    def key(self) -> str:
        return item_key(self.tenant, self.capture_id)


def item_key(tenant: str, capture_id: str) -> str:
    """Return the Kafka key of a work item."""
    return f"{tenant}/{capture_id}"


def queue_key(tenant: str, queue: str) -> str:
    """Return the Kafka key of a queue (queue commands, ticks' queues, capacity, assignments)."""
    return f"{tenant}/{queue}"


ALL_CONTRACTS: dict[str, type[Contract]] = {
    "lifecycle_event": LifecycleEvent,
    "queue_command": QueueCommand,
    "sla_tick": SlaTick,
    "capacity": Capacity,
    "assignment": Assignment,
    "assignment_response": AssignmentResponse,
    "history_record": HistoryRecord,
    "dead_letter": DeadLetter,
    "work_item": WorkItem,
}
