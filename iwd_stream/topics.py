"""Topic names and their shapes: one definition used by the worker, tools and tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    key: str
    copartition_group: str  # topics read by one stage share a partition count
    compacted: bool = False
    doc: str = ""


TOPIC_SPECS: tuple[TopicSpec, ...] = (
    TopicSpec("workitem.events", "tenant/capture_id", "workitems", doc="lifecycle events in"),
    TopicSpec("assignment.responses", "tenant/capture_id", "workitems", doc="routing answers"),
    TopicSpec("queue.commands", "tenant/queue", "queues", doc="enqueue/update/remove"),
    TopicSpec("queue.ticks", "(partition)", "queues", doc="SLA timer ticks per partition"),
    TopicSpec("capacity", "tenant/queue", "queues", doc="routing consumers' free capacity"),
    TopicSpec("assignments", "tenant/queue", "queues", doc="offers out to routing consumers"),
    TopicSpec("workitem.history", "tenant/capture_id", "workitems", doc="audit trail"),
    TopicSpec("deadletter", "original key", "workitems", doc="rejected input with reason"),
)


@dataclass(frozen=True)
class TopicNames:
    """Concrete topic names under a prefix (``iwd`` by default)."""

    prefix: str = "iwd"

    def name(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    @property
    def events(self) -> str:
        return self.name("workitem.events")

    @property
    def responses(self) -> str:
        return self.name("assignment.responses")

    @property
    def queue_commands(self) -> str:
        return self.name("queue.commands")

    @property
    def ticks(self) -> str:
        return self.name("queue.ticks")

    @property
    def capacity(self) -> str:
        return self.name("capacity")

    @property
    def assignments(self) -> str:
        return self.name("assignments")

    @property
    def history(self) -> str:
        return self.name("workitem.history")

    @property
    def deadletter(self) -> str:
        return self.name("deadletter")

    def all(self) -> list[str]:
        return [self.name(spec.suffix) for spec in TOPIC_SPECS]
