"""The one place the Faust app is wired: topics, tables, agents, the SLA timer and web views.

Agents stay thin: they hand the raw message to a processor (``processors.py``, no Faust in
it), write the table entries it returns, and send what it returns through the outbox.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust

from iwd_stream.contracts import SlaTick, encode
from iwd_stream.errors import DecodeError
from iwd_stream.kafka.admin import create_topics
from iwd_stream.observability.metrics import Metrics
from iwd_stream.settings import Settings
from iwd_stream.streaming.outbox import FlushBeforeCommit, Outbox
from iwd_stream.streaming.queues import QueuesProcessor
from iwd_stream.streaming.results import Result, dead_letter
from iwd_stream.streaming.workitems import WorkitemsProcessor
from iwd_stream.topics import TopicNames

log = logging.getLogger(__name__)

WORKITEMS_TABLE = "workitems"
QUEUE_TABLE = "queue_entries"


def app_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}-engine"


def changelog_topics(settings: Settings) -> list[str]:
    return [f"{app_id(settings)}-{t}-changelog" for t in (WORKITEMS_TABLE, QUEUE_TABLE)]


def faust_config(settings: Settings, bootstrap: str) -> dict[str, Any]:
    """Return the Faust settings of an engine worker (the benchmarks' bare apps use them too)."""
    return {
        "broker": f"kafka://{bootstrap}",
        "store": settings.store,
        "datadir": str(settings.data_dir),
        "web_enabled": True,
        "web_bind": settings.web_host,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": 1,
        "topic_allow_declare": True,
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        "table_standby_replicas": 0,
        "broker_commit_interval": 1.0,
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_s / 3),
        "autodiscover": False,
        # Bytes in and out everywhere: decoding is ours (one codec, failures to the dead
        # letters), and Faust cannot use pydantic models as value types anyway.
        "key_serializer": "raw",
        "value_serializer": "raw",
        "web_in_thread": False,
    }


def provision_topics(settings: Settings, bootstrap: str) -> list[str]:
    """Create every topic the engine reads or writes (and its changelogs) before agents start.

    Existing topics are left as they are (an operator may have tuned them).
    """
    names = TopicNames(settings.topic_prefix)
    # The audit trail and the dead letters have no purge window.
    forever = [names.history, names.deadletter]
    n = settings.partitions
    created = create_topics(bootstrap, [t for t in names.all() if t not in forever], n)
    created += create_topics(bootstrap, forever, n, config={"retention.ms": "-1"})
    created += create_topics(
        bootstrap, changelog_topics(settings), n, config={"cleanup.policy": "compact"}
    )
    return created


@dataclass
class Engine:
    """A wired worker: the Faust app plus what its agents and views share."""

    app: faust.App
    settings: Settings
    outbox: Outbox
    metrics: Metrics
    workitems: WorkitemsProcessor
    queues: QueuesProcessor
    names: TopicNames

    def ready(self) -> tuple[bool, str]:
        """Return readiness: tables recovered (see :meth:`tables_ready`) and queue indexes built."""
        ok, why = self.tables_ready()
        if not ok:
            return ok, why
        if not self.queues.built and self.owned_queue_partitions():
            # The SLA timer rebuilds them once the tables are recovered; until then no queue is known.
            return False, "rebuilding queue indexes"
        return True, "ready"

    def owned_queue_partitions(self) -> set[int]:
        return {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.names.queue_commands
        }

    def tables_ready(self) -> tuple[bool, str]:
        """Return Faust-level readiness: not rebalancing, not recovering, tables recovered."""
        app: Any = self.app
        if not app.started:
            return False, "starting"
        if app.rebalancing:
            return False, "rebalancing"
        recovery = app.tables.recovery
        if recovery.in_recovery or not recovery.completed.is_set():
            return False, "recovering tables"
        return True, "ready"


def build_engine(
    settings: Settings, bootstrap: str, *, rules: Any, worker_name: str | None = None
) -> Engine:
    """Build the Faust app for one worker process."""
    names = TopicNames(settings.topic_prefix)
    app = faust.App(app_id(settings), **faust_config(settings, bootstrap))
    make_changelog_flush_complete(app)
    metrics = Metrics()
    outbox = Outbox(bootstrap)
    app.sensors.add(FlushBeforeCommit(outbox))
    worker = worker_name or f"worker-{uuid.uuid4().hex[:6]}"

    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
    workitems_in = app.topic(names.events, names.responses, partitions=settings.partitions, **raw)
    queues_in = app.topic(
        names.queue_commands, names.ticks, names.capacity, partitions=settings.partitions, **raw
    )
    items_table = app.Table(WORKITEMS_TABLE, default=None, partitions=settings.partitions, **raw)
    queue_table = app.Table(QUEUE_TABLE, default=None, partitions=settings.partitions, **raw)

    wp = WorkitemsProcessor(rules=rules, names=names, metrics=metrics)
    qp = QueuesProcessor(
        rules=rules,
        names=names,
        metrics=metrics,
        partitions=settings.partitions,
        offer_timeout_s=settings.offer_timeout_s,
    )
    engine = Engine(app, settings, outbox, metrics, wp, qp, names)

    def process(stage: str, msg: Any, handler: Any, *extra: Any) -> Result:
        """Run a processor on one message; an unexpected error dead-letters it, never drops it.

        Faust acks a message whose agent crashed and goes on past it, so an exception escaping
        here would silently lose the event. We keep its bytes, the error and its origin.
        """
        now = _now()
        origin = (msg.topic, msg.partition, msg.offset, msg.key, msg.value)
        try:
            return handler(*origin, *extra, now)
        except Exception as exc:  # noqa: BLE001
            log.exception("%s: unexpected error on %s[%s]@%s", stage, *origin[:3])
            metrics.deadlettered.labels(stage, "internal_error").inc()
            error = DecodeError("internal_error", f"{type(exc).__name__}: {exc}")
            out = Result()
            out.outputs.append(dead_letter(names, stage, error, *origin, now))
            return out

    def apply(result: Result, table: Any) -> None:
        for key, value in result.writes:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        for out in result.outputs:
            outbox.send(out.topic, out.key, out.value, out.partition)

    @app.agent(workitems_in, concurrency=1)
    async def workitems_stage(stream: Any) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            apply(process("workitems", event.message, wp.handle, items_table.get), items_table)
            metrics.processing_seconds.labels("workitems").observe(time.perf_counter() - started)

    def rebuild_indexes() -> None:
        """Rebuild the in-memory queue indexes of the owned partitions from the recovered table.

        Synchronous (no await), so no queues message is processed half-way through it. Its
        result carries messages only (SLA events), no table writes: any task may run it.
        """
        apply(qp.rebuild(queue_table.items(), engine.owned_queue_partitions(), _now()), queue_table)
        # Millions of long-lived index objects: keep the cyclic GC from rescanning them.
        gc.collect()
        gc.freeze()

    @app.agent(queues_in, concurrency=1)
    async def queues_stage(stream: Any) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            if not qp.built:
                rebuild_indexes()
            apply(process("queues", event.message, qp.handle), queue_table)
            metrics.processing_seconds.labels("queues").observe(time.perf_counter() - started)

    def invalidate(sender: Any, *args: Any, **kwargs: Any) -> None:
        qp.invalidate()

    signals: Any = (app.on_partitions_revoked, app.on_partitions_assigned)
    for signal in signals:
        signal.connect(invalidate)

    @app.timer(settings.tick_interval_s)
    async def sla_timer() -> None:
        # on every worker, for the queues partitions it owns; a skipped or doubled tick is
        # harmless because the queues stage only acts on what is due at the tick's time. (Not
        # engine.ready(): that waits for the indexes, which are rebuilt here as soon as the
        # tables are recovered, not when the queues stage's first message, maybe behind a
        # backlog, arrives.)
        ok, _ = engine.tables_ready()
        if not ok:
            return
        if not qp.built:
            rebuild_indexes()
        now = _now()
        for tp in app.assignor.assigned_actives():
            if tp.topic != names.ticks:
                continue
            tick = SlaTick(
                tick_id=f"{worker}:{tp.partition}:{now.isoformat()}",
                partition=tp.partition,
                tick_at=now,
                worker=worker,
            )
            outbox.send(names.ticks, None, encode(tick), partition=tp.partition)

    @app.timer(5.0)
    async def refresh_gauges() -> None:
        metrics.ready.set(1 if engine.ready()[0] else 0)
        # len() of a Faust RocksDB table walks every key: ask RocksDB for its estimate, and
        # count queue entries from the in-memory indexes.
        items = estimated_keys(items_table)
        if items is not None:
            metrics.table_size.labels(WORKITEMS_TABLE).set(items)
        metrics.table_size.labels(QUEUE_TABLE).set(qp.entry_count())
        qp.publish_queue_gauges(_now())
        consumer = app.consumer
        if consumer is None:
            return
        for tp in app.assignor.assigned_actives():
            try:
                end = consumer.highwater(tp)
                pos = await consumer.position(tp)
            except Exception:  # noqa: BLE001 - lag is best effort while rebalancing
                continue
            if end is not None and pos is not None:
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - pos))

    from iwd_stream.streaming.views import register_views

    register_views(engine, items_table, queue_table)
    return engine


def make_changelog_flush_complete(app: faust.App) -> None:
    """Make the producer flush before an offset commit wait for every table write.

    Table writes go through Faust's ProducerBuffer before they reach aiokafka. Its ``flush``
    (faust-streaming 0.15) returns as soon as one message takes more than 0.1 s to hand over,
    and it cannot see the message being handed over; the commit that follows then covers
    events whose changelog records were not sent yet. A worker killed then restarts with a
    table that misses transitions whose input offsets were committed (found by kill -9 under
    load: history seqs reused). This counts what was put and what was handed over, and waits.
    """
    buffer: Any = app.producer.buffer
    counts = {"put": 0, "sent": 0}
    put, send_pending = buffer.put, buffer._send_pending

    def counting_put(fut: Any) -> None:
        counts["put"] += 1
        put(fut)

    async def counting_send(fut: Any) -> None:
        try:
            await send_pending(fut)
        finally:
            counts["sent"] += 1

    async def flush() -> None:
        target = counts["put"]
        waited = 0.0
        while counts["sent"] < target:
            buffer.message_sent.clear()
            try:
                await asyncio.wait_for(buffer.message_sent.wait(), timeout=1.0)
            except TimeoutError:
                waited += 1.0
                if waited % 30 == 0:
                    log.warning(
                        "changelog flush waiting for %d message(s)", target - counts["sent"]
                    )

    # Set before the buffer's task starts, which looks _send_pending up once when it does.
    buffer.put, buffer._send_pending, buffer.flush = counting_put, counting_send, flush


def estimated_keys(table: Any) -> int | None:
    """Return RocksDB's estimate of a table's keys on this worker (None if unavailable)."""
    store = table.data
    try:
        return sum(
            int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
            for db in store._dbs_for_actives()
        )
    except Exception:  # noqa: BLE001 - another store (memory://) or an older rocksdict
        return None


def _now() -> datetime:
    return datetime.now(UTC)
