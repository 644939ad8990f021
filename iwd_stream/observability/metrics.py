"""All Prometheus metrics of a worker, created in one place on an injectable registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double every counter's output and no dashboard of ours reads them.
disable_created_metrics()

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The worker's metrics; tests pass a fresh CollectorRegistry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "iwd_events_total",
            "Lifecycle events and responses processed, by type and outcome.",
            ["stage", "type", "outcome"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "iwd_processing_seconds",
            "Time to process one message in a stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.deadlettered = Counter(
            "iwd_deadlettered_total",
            "Messages sent to the dead-letter topic, by reason.",
            ["stage", "reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "iwd_queue_depth",
            "Items in the queue (queued or offered).",
            ["tenant", "queue"],
            registry=r,
        )
        self.queue_oldest_age = Gauge(
            "iwd_queue_oldest_age_seconds",
            "Age of the oldest item in the queue.",
            ["tenant", "queue"],
            registry=r,
        )
        self.queue_at_risk = Gauge(
            "iwd_queue_at_risk_items",
            "Items at risk of breaching their SLA.",
            ["tenant", "queue"],
            registry=r,
        )
        self.queue_breached = Gauge(
            "iwd_queue_breached_items",
            "Items past their due time.",
            ["tenant", "queue"],
            registry=r,
        )
        self.sla_transitions = Counter(
            "iwd_sla_transitions_total",
            "SLA state changes emitted (at_risk, breached, expired).",
            ["tenant", "state"],
            registry=r,
        )
        self.sla_breaches = Counter(
            "iwd_sla_breaches_total", "Items that breached their SLA.", ["tenant"], registry=r
        )
        self.assignments = Counter(
            "iwd_assignments_total",
            "Assignments by outcome (offered, accepted, declined, timed_out, revoked).",
            ["tenant", "outcome"],
            registry=r,
        )
        self.dispatch_seconds = Histogram(
            "iwd_dispatch_latency_seconds",
            "Capacity event received to assignment sent.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tick_seconds = Histogram(
            "iwd_tick_duration_seconds",
            "Time to process one SLA tick on one partition.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rescored_per_tick = Histogram(
            "iwd_tick_rescored_items",
            "Items whose SLA state or offer changed in one tick (re-keys are not counted).",
            buckets=(0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000),
            registry=r,
        )
        self.table_size = Gauge(
            "iwd_table_size", "Keys in a table on this worker.", ["table"], registry=r
        )
        self.consumer_lag = Gauge(
            "iwd_consumer_lag",
            "Messages behind the end of a partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.ready = Gauge(
            "iwd_ready", "1 when the worker is ready (not rebalancing/recovering).", registry=r
        )
