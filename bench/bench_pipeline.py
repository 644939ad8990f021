"""Pipeline benchmark on a real Kafka broker: prints figures; never asserts on time.

    .venv/bin/python bench/bench_pipeline.py [--quick | --full] [--json var/bench-pipeline.json]

In one run, on one broker (``obtain_kafka``: ``KAFKA_BOOTSTRAP_SERVERS``, else a local Apache
Kafka), it measures and prints side by side (DESIGN.md, "The performance budget"; issue 4):

1. throughput: the same pre-produced create/update events through a real ``iwd-stream worker``
   (both stages) and through bare Faust apps run the same way (consume only, passthrough =
   consume + 1 send, table hop = decode + table write + 1 send); events/s from "ready" until
   all are processed, the ratio pipeline / passthrough, CPU per event and sends per event;
   plus the stage processors alone, in-process, on a sample of the same events (the ceiling
   the domain code sets before any Kafka cost);
2. dispatch latency: capacity event produced -> assignment event consumed, one capacity
   message at a time, with thousands of items queued;
3. tick duration with 10k / 100k (/ 1M with --full) queued items when 0 % and 1 % of them
   change, in-process on the QueuesProcessor fed with real QueueCommand bytes (one fresh
   subprocess per size);
4. RSS per queued item, in that subprocess and for worker processes;
5. recovery: a fresh worker (empty data dir) restoring both tables' changelogs, then a
   restart on the same data dir (RocksDB keeps the state: only the tail is read); time to
   /ready and until the queues index is rebuilt (the first SLA tick processed).

Progress goes to stderr; figures to stdout, then a table with the targets beside them, and
JSON to var/bench-pipeline.json. No plots (matplotlib is not a dependency of the project).
Default run: about 6-10 minutes on 2 cores; --quick about 2; --full adds the 1M-item cases.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from iwd_stream.contracts import (
    Capacity,
    EventType,
    LifecycleEvent,
    SlaTick,
    WorkItemFields,
    encode,
    item_key,
    queue_key,
)
from iwd_stream.devkafka import obtain_kafka
from iwd_stream.devkafka.local import free_port
from iwd_stream.kafka.admin import create_topics
from iwd_stream.kafka.producer import make_producer, murmur2_partition
from iwd_stream.observability.metrics import Metrics
from iwd_stream.observability.scrape import histogram_mean, metric_sum
from iwd_stream.procs import WorkerProcess
from iwd_stream.settings import Settings
from iwd_stream.streaming.app import changelog_topics, provision_topics
from iwd_stream.streaming.queues import QueuesProcessor, table_key
from iwd_stream.streaming.rulebook import load_rulebook
from iwd_stream.streaming.workitems import WorkitemsProcessor
from iwd_stream.topics import TopicNames

ROOT = Path(__file__).resolve().parent.parent
RULES = Path(__file__).resolve().parent / "rules" / "bench.yaml"
BASELINES = Path(__file__).resolve().parent / "faust_baselines.py"
TENANT = "bench"
T_START = time.monotonic()


@dataclass(frozen=True)
class Plan:
    """How big each section is; --quick / default / --full."""

    name: str
    events: int  # throughput: create/update events pre-produced to the events topic
    sample: int  # throughput: events run through the processors in-process
    baselines: tuple[str, ...]
    dispatch_items: int
    capacities: int
    gap_s: float
    tick_sizes: tuple[int, ...]
    quiet_ticks: int
    recovery_sizes: tuple[int, ...]


BASELINES_ALL = ("consume", "passthrough", "tablehop")
PLANS = {
    "quick": Plan(
        name="quick",
        events=6_000,
        sample=1_000,
        baselines=("passthrough", "tablehop"),
        dispatch_items=3_000,
        capacities=150,
        gap_s=0.02,
        tick_sizes=(10_000,),
        quiet_ticks=100,
        recovery_sizes=(20_000,),
    ),
    "default": Plan(
        name="default",
        events=30_000,
        sample=3_000,
        baselines=BASELINES_ALL,
        dispatch_items=10_000,
        capacities=300,
        gap_s=0.02,
        tick_sizes=(10_000, 100_000),
        quiet_ticks=200,
        recovery_sizes=(100_000,),
    ),
    "full": Plan(
        name="full",
        events=50_000,
        sample=5_000,
        baselines=BASELINES_ALL,
        dispatch_items=10_000,
        capacities=500,
        gap_s=0.02,
        tick_sizes=(10_000, 100_000, 1_000_000),
        quiet_ticks=200,
        recovery_sizes=(100_000, 1_000_000),
    ),
}


class BenchError(RuntimeError):
    """A section could not be measured (a process died or did not get there in time)."""


# --- small helpers ---------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T_START:7.1f}s] {msg}", file=sys.stderr, flush=True)


def out(msg: str = "") -> None:
    print(msg, flush=True)


def http_get(url: str, timeout_s: float = 5.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return bytes(exc.read())
    except (OSError, ValueError):
        return None


def http_json(url: str, timeout_s: float = 5.0) -> Any:
    body = http_get(url, timeout_s)
    if body is None:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def unlabelled(text: str, name: str) -> float:
    """The value of a sample without labels (``name value``), 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


def median(values: list[float]) -> float:
    return pct(values, 50)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def produce_all(producer: Any, records: Iterator[tuple[str, bytes, bytes, int | None]]) -> int:
    n = 0
    for topic, key, value, partition in records:
        kwargs: dict[str, Any] = {"key": key, "value": value}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 5000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise BenchError(f"{left} message(s) not delivered")
    return n


def high_watermarks(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Sum of the end offsets of each topic (messages written so far)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        md = c.list_topics(timeout=10)
        totals = {}
        for t in topics:
            parts = md.topics[t].partitions if t in md.topics else {}
            totals[t] = sum(
                c.get_watermark_offsets(TopicPartition(t, p), timeout=10, cached=False)[1]
                for p in parts
            )
        return totals
    finally:
        c.close()


class Watermarks:
    """Keeps one consumer to read end offsets repeatedly while a run is followed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
        md = self.consumer.list_topics(topic, timeout=10)
        self.parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]

    def total(self) -> int:
        return sum(
            self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1] for tp in self.parts
        )

    def close(self) -> None:
        self.consumer.close()


def wait_until(
    what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 0.2
) -> tuple[Any, float]:
    """Poll ``check`` until it returns something truthy; return it and when (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got, time.monotonic()
        time.sleep(every_s)
    raise BenchError(f"timed out after {timeout_s:.0f}s waiting for {what}")


# --- workload ----------------------------------------------------------------------------------


def lifecycle_events(
    creates: int, updates: int, queues: int, stamp: datetime
) -> list[tuple[bytes, bytes]]:
    """Return ``creates`` create events, then ``updates`` updates (new priority) of the first items."""
    events = []
    for i in range(creates):
        cid = f"W{i:08d}"
        ev = LifecycleEvent(
            type=EventType.CREATE,
            event_id=f"create-{cid}",
            tenant=TENANT,
            capture_id=cid,
            source="bench",
            occurred_at=stamp,
            version=1,
            fields=WorkItemFields(
                queue=f"q{i % queues}", priority=10 + i % 80, business_value=i % 100
            ),
        )
        events.append((item_key(TENANT, cid).encode(), encode(ev)))
    for i in range(updates):
        cid = f"W{i:08d}"
        ev = LifecycleEvent(
            type=EventType.UPDATE,
            event_id=f"update-{cid}",
            tenant=TENANT,
            capture_id=cid,
            source="bench",
            occurred_at=stamp + timedelta(seconds=1),
            version=2,
            fields=WorkItemFields(priority=15 + i % 80),
        )
        events.append((item_key(TENANT, cid).encode(), encode(ev)))
    return events


def start_worker(
    kafka: str, run_dir: Path, prefix: str, name: str, partitions: int, procs: list[Any]
) -> WorkerProcess:
    w = WorkerProcess(
        bootstrap=kafka,
        data_dir=run_dir / name,
        topic_prefix=prefix,
        partitions=partitions,
        tick_interval_s=1.0,
        offer_timeout_s=120.0,
        rules=RULES,
        name=name,
        log_level="info",
    )
    w.start(wait_ready_s=0)
    procs.append(w)
    return w


def worker_alive(w: WorkerProcess) -> None:
    if w.proc is not None and w.proc.poll() is not None:
        raise BenchError(f"worker {w.name} exited with {w.proc.returncode}; see {w.log_file}")


# --- 1. throughput -------------------------------------------------------------------------------


def follow(
    label: str,
    pid: int,
    alive: Callable[[], None],
    poll: Callable[[], tuple[bool, int, bool] | None],
    total: int,
    timeout_s: float,
    done_at: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Follow a run from start to done; rate = events processed after ready / time after ready.

    ``poll`` returns (ready, processed, done) or None when the process does not answer yet;
    ``done_at`` (optional) says when the work was done, if that was before ``done`` was seen.
    """
    started = time.monotonic()
    t_ready = c_ready = cpu_ready = None
    last_log = 0.0
    while True:
        alive()
        now = time.monotonic()
        if now - started > timeout_s:
            raise BenchError(f"{label}: not done after {timeout_s:.0f}s")
        state = poll()
        now = time.monotonic()
        if state is not None:
            ready, count, done = state
            if ready and t_ready is None:
                t_ready, c_ready, cpu_ready = now, count, cpu_seconds(pid)
                log(f"{label}: ready after {now - started:.1f}s ({count:,} already processed)")
            if t_ready is not None and done:
                cpu_done = cpu_seconds(pid)
                break
            if now - last_log >= 5:
                log(f"{label}: {count:,}/{total:,} processed")
                last_log = now
        time.sleep(0.1)
    assert t_ready is not None and c_ready is not None and cpu_ready is not None
    window = (done_at() if done_at is not None else now) - t_ready
    measured = total - c_ready
    return {
        "startup_s": round(t_ready - started, 2),
        "processed_before_ready": c_ready,
        "events_measured": measured,
        "seconds": round(window, 3),
        "events_per_s": round(measured / window, 1) if window > 0 else None,
        "cpu_s": round(cpu_done - cpu_ready, 2),
        "cpu_util": round((cpu_done - cpu_ready) / window, 2) if window > 0 else None,
        "cpu_ms_per_event": round((cpu_done - cpu_ready) * 1000 / measured, 3)
        if measured
        else None,
    }


def run_baseline(
    mode: str,
    kafka: str,
    source: str,
    prefix: str,
    n: int,
    partitions: int,
    run_dir: Path,
    procs: list[Any],
) -> dict[str, Any]:
    sink = f"{prefix}.bench.{mode}"
    create_topics(kafka, [sink], partitions)
    port = free_port()
    data_dir = run_dir / f"baseline-{mode}"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / f"baseline-{mode}.log"
    cmd = [
        sys.executable,
        str(BASELINES),
        mode,
        "--bootstrap",
        kafka,
        "--source",
        source,
        "--sink",
        sink,
        "--app-id",
        f"{prefix}-bare-{mode}",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--partitions",
        str(partitions),
    ]
    with log_path.open("ab") as logf:
        proc = subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    procs.append(proc)

    def alive() -> None:
        if proc.poll() is not None:
            raise BenchError(f"baseline {mode} exited with {proc.returncode}; see {log_path}")

    def poll() -> tuple[bool, int, bool] | None:
        got = http_json(f"http://127.0.0.1:{port}/progress", 5)
        if not isinstance(got, dict):
            return None
        return bool(got["ready"]), int(got["count"]), int(got["count"]) >= n

    try:
        result = follow(f"bare {mode}", proc.pid, alive, poll, n, timeout_s=60 + n / 200)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return result


def in_process_stages(sample: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Run events through both processors in this process: no Kafka, no Faust."""
    rules = load_rulebook(RULES)
    names = TopicNames("bench-inproc")
    wp = WorkitemsProcessor(rules=rules, names=names, metrics=Metrics())
    qp = QueuesProcessor(rules=rules, names=names, metrics=Metrics(), partitions=4)
    table: dict[bytes, bytes] = {}
    commands: list[tuple[bytes | None, bytes]] = []
    outputs = 0
    now = datetime.now(UTC)
    gc.collect()
    started = time.process_time()
    for offset, (key, value) in enumerate(sample):
        r = wp.handle(names.events, 0, offset, key, value, table.get, now)
        for k, v in r.writes:
            if v is None:
                table.pop(k, None)
            else:
                table[k] = v
        outputs += len(r.outputs)
        commands.extend((o.key, o.value) for o in r.outputs if o.topic == names.queue_commands)
    wi_s = time.process_time() - started
    qwrites = 0
    started = time.process_time()
    for offset, (key, value) in enumerate(commands):
        r = qp.handle(names.queue_commands, 0, offset, key, value, now)
        qwrites += len(r.writes)
        outputs += len(r.outputs)
    q_s = time.process_time() - started
    n = len(sample)
    return {
        "events": n,
        "queue_commands": len(commands),
        "workitems_us_per_event": round(wi_s * 1e6 / n, 1),
        "queues_us_per_command": round(q_s * 1e6 / max(1, len(commands)), 1),
        "both_us_per_event": round((wi_s + q_s) * 1e6 / n, 1),
        "events_per_s": round(n / (wi_s + q_s), 1),
        "table_writes_per_event": round((len(sample) + qwrites) / n, 2),
        "outputs_per_event": round(outputs / n, 2),
    }


def bench_throughput(
    kafka: str, plan: Plan, partitions: int, run_dir: Path, prefix: str, procs: list[Any]
) -> dict[str, Any]:
    out(
        f"\n1. throughput: {plan.events:,} create/update events, {partitions} partitions, one process each"
    )
    settings = Settings(bootstrap_servers=kafka, topic_prefix=prefix, partitions=partitions)
    provision_topics(settings, kafka)
    names = TopicNames(prefix)
    log(f"throughput: building {plan.events:,} events")
    stamp = datetime.now(UTC)
    events = lifecycle_events(plan.events - plan.events // 4, plan.events // 4, 8, stamp)
    log(f"throughput: stage processors in-process on {plan.sample:,} events of the same mix")
    inproc = in_process_stages(
        lifecycle_events(plan.sample - plan.sample // 4, plan.sample // 4, 8, stamp)
    )
    out(
        f"  processors alone, in-process (no Kafka, {inproc['events']:,} events): "
        f"workitems {inproc['workitems_us_per_event']:,.0f} us/event + queues "
        f"{inproc['queues_us_per_command']:,.0f} us/command = {inproc['events_per_s']:,.0f} events/s"
    )
    log(f"throughput: producing {len(events):,} events to {names.events}")
    producer = make_producer(kafka, linger_ms=20)
    produce_all(producer, ((names.events, k, v, None) for k, v in events))
    n = len(events)
    result: dict[str, Any] = {"events": n, "partitions": partitions, "in_process": inproc}
    for mode in plan.baselines:
        log(f"throughput: bare Faust {mode}")
        result[mode] = run_baseline(
            mode, kafka, names.events, prefix, n, partitions, run_dir, procs
        )
        r = result[mode]
        out(
            f"  bare Faust {mode:<12} {r['events_per_s']:>9,.0f} events/s   "
            f"({r['events_measured']:,} in {r['seconds']:.1f} s, {r['cpu_ms_per_event']:.3f} ms CPU/event, "
            f"CPU {r['cpu_util']:.0%} of a core; up in {r['startup_s']:.1f} s)"
        )

    log("throughput: iwd-stream worker (both stages)")
    w = start_worker(kafka, run_dir, prefix, "throughput", partitions, procs)
    marks = Watermarks(kafka, names.queue_commands)
    seen: dict[str, Any] = {"streak": 0, "wi_done_at": None}

    def poll() -> tuple[bool, int, bool] | None:
        ready = http_json(w.url + "/ready", 5)
        text = http_get(w.url + "/metrics", 5)
        if not isinstance(ready, dict) or text is None:
            return None
        m = text.decode()
        wi = int(metric_sum(m, "iwd_events_total", stage="workitems"))
        q = int(metric_sum(m, "iwd_events_total", stage="queues"))
        if wi >= n and seen["wi_done_at"] is None:
            seen["wi_done_at"] = time.monotonic()
        done = False
        if wi >= n:
            hw = marks.total()
            # Done when the queues stage has applied every command written so far, twice in a
            # row (the outbox may still hold the last few for a few ms).
            seen["streak"] = seen["streak"] + 1 if q >= hw else 0
            if seen["streak"] == 1:
                seen["first_done"] = time.monotonic()
            done = seen["streak"] >= 2
        return bool(ready.get("ready")), wi, done

    try:
        # The second, confirming poll is not part of the work: the window ends at the first.
        pipe = follow(
            "pipeline",
            w.proc.pid if w.proc else 0,
            lambda: worker_alive(w),
            poll,
            n,
            timeout_s=120 + n / 100,
            done_at=lambda: seen["first_done"],
        )
        text = (http_get(w.url + "/metrics", 10) or b"").decode()
        pipe["rss_mib"] = round(rss_kib(w.proc.pid) / 1024, 1) if w.proc else None
    finally:
        marks.close()
        w.stop()
    stats = {
        "workitems_agent_ms_per_msg": round(
            histogram_mean(text, "iwd_processing_seconds", stage="workitems") * 1000, 3
        ),
        "queues_agent_ms_per_msg": round(
            histogram_mean(text, "iwd_processing_seconds", stage="queues") * 1000, 3
        ),
        "queue_commands_applied": int(metric_sum(text, "iwd_events_total", stage="queues")),
        "dead_lettered": int(metric_sum(text, "iwd_deadlettered_total")),
    }
    wm = high_watermarks(kafka, [names.history, names.queue_commands, *changelog_topics(settings)])
    cl_wi, cl_q = changelog_topics(settings)
    faust_sends = wm[cl_wi] + wm[cl_q]
    outbox_sends = wm[names.history] + wm[names.queue_commands]
    pipe.update(stats)
    pipe["per_event"] = {
        "faust_consumes": round((n + wm[names.queue_commands]) / n, 2),
        "faust_sends_changelog": round(faust_sends / n, 2),
        "outbox_sends": round(outbox_sends / n, 2),
    }
    result["pipeline"] = pipe
    if stats["dead_lettered"]:
        out(f"  WARNING: the worker dead-lettered {stats['dead_lettered']:,} of the events")
    pe = pipe["per_event"]
    out(
        f"  iwd-stream pipeline  {pipe['events_per_s']:>9,.0f} events/s   "
        f"({pipe['events_measured']:,} in {pipe['seconds']:.1f} s, {pipe['cpu_ms_per_event']:.3f} ms CPU/event, "
        f"CPU {pipe['cpu_util']:.0%} of a core; up in {pipe['startup_s']:.1f} s)"
    )
    out(
        f"    per event: {pe['faust_consumes']} Faust consumes, {pe['faust_sends_changelog']} Faust sends "
        f"(table changelogs), {pe['outbox_sends']} outbox sends (history, queue commands)"
    )
    out(
        f"    agent body per message: workitems {stats['workitems_agent_ms_per_msg']:.3f} ms, "
        f"queues {stats['queues_agent_ms_per_msg']:.3f} ms (decode, domain, table write, outbox)"
    )
    if seen["wi_done_at"] is not None:
        result["pipeline"]["workitems_caught_up_s_before_done"] = round(
            seen["first_done"] - seen["wi_done_at"], 2
        )
    for base in ("passthrough", "tablehop"):
        if base in result and pipe["events_per_s"]:
            ratio = pipe["events_per_s"] / result[base]["events_per_s"]
            result[f"ratio_vs_{base}"] = round(ratio, 3)
            out(f"  ratio pipeline / {base:<12} {ratio:.2f}")
    return result


# --- 2. dispatch latency -----------------------------------------------------------------------


def bench_dispatch(
    kafka: str, plan: Plan, partitions: int, run_dir: Path, prefix: str, procs: list[Any]
) -> dict[str, Any]:
    out(
        f"\n2. dispatch latency: {plan.dispatch_items:,} items in 4 queues, "
        f"{plan.capacities} capacity messages one at a time, {plan.gap_s * 1000:.0f} ms apart"
    )
    settings = Settings(bootstrap_servers=kafka, topic_prefix=prefix, partitions=partitions)
    provision_topics(settings, kafka)
    names = TopicNames(prefix)
    started = time.monotonic()
    w = start_worker(kafka, run_dir, prefix, "dispatch", partitions, procs)
    try:
        wait_until(
            "dispatch worker ready",
            lambda: (worker_alive(w), (http_json(w.url + "/ready") or {}).get("ready"))[1],
            180,
        )
        startup = time.monotonic() - started
        assert w.proc is not None
        time.sleep(2)
        rss_empty = rss_kib(w.proc.pid)
        log(
            f"dispatch: worker ready in {startup:.1f}s (RSS {rss_empty / 1024:.0f} MiB); queueing {plan.dispatch_items:,} items"
        )
        creates = lifecycle_events(plan.dispatch_items, 0, 4, datetime.now(UTC))
        producer = make_producer(kafka, linger_ms=20)
        t0 = time.monotonic()
        produce_all(producer, ((names.events, k, v, None) for k, v in creates))

        def queued() -> bool:
            worker_alive(w)
            text = (http_get(w.url + "/metrics") or b"").decode()
            return metric_sum(text, "iwd_events_total", stage="queues") >= len(creates)

        _, t1 = wait_until("items queued", queued, 60 + len(creates) / 100, 0.25)
        live_rate = len(creates) / (t1 - t0)
        time.sleep(3)
        rss_loaded = rss_kib(w.proc.pid)
        log(
            f"dispatch: {len(creates):,} queued in {t1 - t0:.1f}s; RSS {rss_loaded / 1024:.0f} MiB; sending capacity"
        )

        consumer = Consumer(
            {
                "bootstrap.servers": kafka,
                "group.id": f"{prefix}-latency",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 10,
            }
        )
        md = consumer.list_topics(names.assignments, timeout=10)
        consumer.assign(
            [
                TopicPartition(names.assignments, p, 0)
                for p in md.topics[names.assignments].partitions
            ]
        )
        for _ in range(5):
            consumer.poll(0.2)
        fast = make_producer(kafka, linger_ms=0)
        sent: dict[str, float] = {}
        got: dict[str, tuple[float, float]] = {}

        def drain(until: float) -> None:
            while True:
                left = until - time.time()
                if left <= 0:
                    return
                msg = consumer.poll(min(left, 0.05))
                if msg is None or msg.error():
                    continue
                at = time.time()
                doc = orjson.loads(msg.value())
                cid = doc.get("capacity_id")
                if cid in sent and cid not in got:
                    got[cid] = (at, msg.timestamp()[1] / 1000.0)

        def send(capacity_id: str, queue: str, gap_s: float) -> None:
            cap = Capacity(
                capacity_id=capacity_id,
                tenant=TENANT,
                queue=queue,
                credits=1,
                occurred_at=datetime.now(UTC),
            )
            raw = encode(cap)
            key = queue_key(TENANT, queue).encode()
            t = time.time()
            fast.produce(names.capacity, key=key, value=raw)
            fast.poll(0)
            sent[capacity_id] = t
            drain(t + gap_s)

        # Warm-up: the first capacity message of each queue, apart (first-use costs show here).
        for q in range(4):
            send(f"warm-{q}", f"q{q}", 0.5)
        drain(time.time() + 1.0)
        for i in range(plan.capacities):
            send(f"lat-{i:05d}", f"q{i % 4}", plan.gap_s)
            if i % 50 == 49:
                log(
                    f"dispatch: {i + 1}/{plan.capacities} capacity messages, {len(got)} assignments back"
                )
        fast.flush(10)
        deadline = time.time() + 10
        while len(got) < len(sent) and time.time() < deadline:
            drain(time.time() + 0.2)
        consumer.close()
        text = (http_get(w.url + "/metrics") or b"").decode()
        rss_after = rss_kib(w.proc.pid)
    finally:
        w.stop()
    warm = [
        round((got[c][0] - sent[c]) * 1000, 1) if c in got else None
        for c in sent
        if c.startswith("warm-")
    ]
    for c in [c for c in sent if c.startswith("warm-")]:
        del sent[c]
        got.pop(c, None)
    total = [(got[c][0] - sent[c]) * 1000 for c in got]
    inbound = [(got[c][1] - sent[c]) * 1000 for c in got]
    result = {
        "items": len(creates),
        "capacities": len(sent),
        "assignments": len(got),
        "missing": len(sent) - len(got),
        "gap_ms": plan.gap_s * 1000,
        "p50_ms": round(pct(total, 50), 2),
        "p90_ms": round(pct(total, 90), 2),
        "p99_ms": round(pct(total, 99), 2),
        "max_ms": round(max(total), 2) if total else None,
        "to_engine_send_p50_ms": round(pct(inbound, 50), 2),
        "to_engine_send_p99_ms": round(pct(inbound, 99), 2),
        "in_stage_dispatch_avg_ms": round(
            unlabelled(text, "iwd_dispatch_latency_seconds_sum")
            * 1000
            / max(1.0, unlabelled(text, "iwd_dispatch_latency_seconds_count")),
            3,
        ),
        "worker_startup_s": round(startup, 2),
        "live_ingest_events_per_s": round(live_rate, 1),
        "worker_rss_empty_mib": round(rss_empty / 1024, 1),
        "worker_rss_loaded_mib": round(rss_loaded / 1024, 1),
        "worker_rss_after_mib": round(rss_after / 1024, 1),
        "worker_rss_bytes_per_item": round((rss_loaded - rss_empty) * 1024 / len(creates)),
        "over_50ms": sum(1 for x in total if x > 50),
        "warmup_ms": warm,
        # [seconds since the first capacity was sent, end-to-end ms, to the worker's send ms]
        "samples": [
            [
                round(sent[c] - min(sent.values()), 3),
                round((got[c][0] - sent[c]) * 1000, 2),
                round((got[c][1] - sent[c]) * 1000, 1),
            ]
            for c in sorted(got, key=sent.__getitem__)
        ],
    }
    out(
        f"  capacity produced -> assignment consumed: p50 {result['p50_ms']:.1f} ms, p90 {result['p90_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms ({result['assignments']}/{result['capacities']} answered, "
        f"{result['over_50ms']} over 50 ms)"
    )
    out(
        f"  capacity produced -> assignment produced by the worker (record timestamp, ms resolution): "
        f"p50 {result['to_engine_send_p50_ms']:.0f} ms, p99 {result['to_engine_send_p99_ms']:.0f} ms; "
        f"dispatch inside the stage {result['in_stage_dispatch_avg_ms']} ms on average"
    )
    out(f"  warm-up (first capacity message of each queue, not counted above): {warm} ms")
    out(
        f"  worker: live ingest {live_rate:,.0f} creates/s while idle otherwise; RSS {result['worker_rss_empty_mib']:.0f} MiB empty, "
        f"{result['worker_rss_loaded_mib']:.0f} MiB with {len(creates):,} items "
        f"({result['worker_rss_bytes_per_item']:,} B per item, both stages)"
    )
    return result


# --- 3 + 4. ticks and memory, in-process (one subprocess per size) --------------------------------

QUIET_POLICY = {
    "rule": "standard",
    "step": {"add": 10, "every_s": 900.0, "max": 100, "business": False},
    "jumps": [{"within_s": 3600.0, "priority": 95}],
    "max": 100,
    "at_risk_s": 3600.0,
}
FAST_POLICY = {
    "rule": "fast",
    "step": {"add": 1, "every_s": 60.0, "max": 15, "business": False},
    "max": 15,
}
REKEY_TICKS = 5


def tick_child(n: int, partitions: int, quiet_ticks: int) -> dict[str, Any]:
    """Load ``n`` entries through QueuesProcessor.handle (QueueCommand bytes), then time ticks.

    1 % of the entries step their priority every 60 s (the "1 % re-keyed" ticks, 5 of them),
    another 1 % reach ``at_risk`` at one later tick (each emits an ``sla`` event); the rest carry
    the bench tenant's policy (due in 8 h, +10 every 15 min) whose next change is minutes away.
    """
    rules = load_rulebook(RULES)
    names = TopicNames("bench-ticks")
    qp = QueuesProcessor(rules=rules, names=names, metrics=Metrics(), partitions=partitions)
    now = datetime.now(UTC).replace(microsecond=0)
    t_rekey = now + timedelta(seconds=30)
    t_sla = now + timedelta(seconds=400)
    issued = now.isoformat()
    gc.collect()
    rss0 = rss_kib()
    handle_s = 0.0
    handle_cpu = 0.0
    batch = 1_000
    queues = [f"q{i}" for i in range(8)]
    qkeys = {q: queue_key(TENANT, q).encode() for q in queues}
    next_log = time.monotonic() + 5
    for start in range(0, n, batch):
        cmds = []
        for i in range(start, min(n, start + batch)):
            cid = f"W{i:08d}"
            q = queues[i % 8]
            if i % 100 == 0:
                created = t_rekey - timedelta(seconds=60)
                extra: dict[str, Any] = {"priority": 10, "reprioritization": FAST_POLICY}
            elif i % 100 == 50:
                created = now - timedelta(seconds=120)
                extra = {
                    "priority": 40,
                    "reprioritization": QUIET_POLICY,
                    "due_at": t_sla + timedelta(seconds=3600),
                }
            else:
                created = now - timedelta(seconds=(i * 7919) % 400)
                extra = {
                    "priority": 10 + i % 80,
                    "reprioritization": QUIET_POLICY,
                    "due_at": created + timedelta(hours=8),
                }
            entry = {
                "tenant": TENANT,
                "capture_id": cid,
                "queue": q,
                "business_value": i % 100,
                "created_at": created,
                "enqueued_at": created,
                "item_seq": 1,
                **extra,
            }
            cmd = {
                "schema_version": 1,
                "op": "enqueue",
                "command_id": f"{TENANT}/{cid}:1:enqueue:{q}",
                "tenant": TENANT,
                "queue": q,
                "capture_id": cid,
                "item_seq": 1,
                "entry": entry,
                "issued_at": issued,
            }
            cmds.append((qkeys[q], orjson.dumps(cmd)))
        t, c = time.perf_counter(), time.process_time()
        for offset, (key, value) in enumerate(cmds, start):
            qp.handle(names.queue_commands, 0, offset, key, value, now)
        handle_s += time.perf_counter() - t
        handle_cpu += time.process_time() - c
        if time.monotonic() >= next_log:
            log(
                f"ticks: {min(n, start + batch):,}/{n:,} entries loaded "
                f"({min(n, start + batch) / handle_s:,.0f}/s in handle())"
            )
            next_log = time.monotonic() + 5
    del cmds
    depth = sum(len(ix) for ix in qp.indexes.values())
    if depth != n:
        raise BenchError(f"{n:,} commands left {depth:,} entries in the queues")
    t, c = time.perf_counter(), time.process_time()
    gc.collect()
    gc_pause, gc_cpu = time.perf_counter() - t, time.process_time() - c
    gc.freeze()  # what the worker does after rebuilding its indexes
    rss1 = rss_kib()

    cpu = {"ticks": 0.0}

    def tick(at: datetime) -> tuple[float, int]:
        """One tick of the worker: one handle() per partition; return wall seconds, outputs."""
        raws = [
            encode(SlaTick(tick_id=f"t{p}:{at.isoformat()}", partition=p, tick_at=at))
            for p in range(partitions)
        ]
        took = 0.0
        outputs = 0
        for p, raw in enumerate(raws):
            t, c = time.perf_counter(), time.process_time()
            r = qp.handle(names.ticks, p, 0, None, raw, at)
            took += time.perf_counter() - t
            cpu["ticks"] += time.process_time() - c
            outputs += len(r.outputs)
        return took, outputs

    def rescored() -> float:
        return qp.metrics.registry.get_sample_value("iwd_tick_rescored_items_sum") or 0.0

    quiet = [tick(now + timedelta(seconds=1, milliseconds=10 * k))[0] for k in range(quiet_ticks)]
    assert rescored() == 0, "quiet ticks re-scored entries"

    def rekeyed_at(at: datetime) -> int:
        """How many of the 1 % fast-stepping entries were re-keyed at ``at``.

        (iwd_tick_rescored_items counts only SLA and offer changes, not re-keys.)
        """
        count = 0
        for i in range(0, n, 100):
            slot = qp.indexes[queue_key(TENANT, queues[i % 8])].slot(f"W{i:08d}")
            count += slot is not None and slot.keyed_at == at
        return count

    rekey = []
    changed_rekey = 0
    cpu["ticks"] = 0.0
    for j in range(REKEY_TICKS):
        at = t_rekey + timedelta(seconds=60 * j)
        rekey.append(tick(at)[0])
        changed_rekey = rekeyed_at(at)
    rekey_cpu = cpu["ticks"] / REKEY_TICKS
    cpu["ticks"] = 0.0
    # What the worker's 5 s gauge timer does on the event loop (walks every entry).
    t, c = time.perf_counter(), time.process_time()
    qp.publish_queue_gauges(t_sla)
    gauges_s, gauges_cpu = time.perf_counter() - t, time.process_time() - c
    before = rescored()
    sla_s, sla_outputs = tick(t_sla)
    sla_cpu = cpu["ticks"]
    changed_sla = rescored() - before
    return {
        "items": depth,
        "queues": len(qp.indexes),
        "partitions": partitions,
        "load_commands_per_s": round(n / handle_s, 1),
        "load_us_per_command": round(handle_s * 1e6 / n, 1),
        "load_cpu_us_per_command": round(handle_cpu * 1e6 / n, 1),
        "rss_before_mib": round(rss0 / 1024, 1),
        "rss_after_mib": round(rss1 / 1024, 1),
        "rss_bytes_per_item": round((rss1 - rss0) * 1024 / n),
        "full_gc_pause_ms": round(gc_pause * 1000, 1),
        "full_gc_cpu_ms": round(gc_cpu * 1000, 1),
        "quiet_tick_ms_median": round(median(quiet) * 1000, 4),
        "quiet_tick_ms_p99": round(pct(quiet, 99) * 1000, 4),
        "quiet_ticks": len(quiet),
        "rekey_1pct_changed": int(changed_rekey),
        "rekey_1pct_tick_ms_median": round(median(rekey) * 1000, 3),
        "rekey_1pct_tick_ms_max": round(max(rekey) * 1000, 3),
        "rekey_1pct_tick_cpu_ms": round(rekey_cpu * 1000, 3),
        "sla_1pct_changed": int(changed_sla),
        "sla_1pct_events": sla_outputs,
        "sla_1pct_tick_ms": round(sla_s * 1000, 3),
        "sla_1pct_tick_cpu_ms": round(sla_cpu * 1000, 3),
        "gauge_refresh_ms": round(gauges_s * 1000, 2),
        "gauge_refresh_cpu_ms": round(gauges_cpu * 1000, 2),
    }


def bench_ticks(plan: Plan, partitions: int) -> dict[str, Any]:
    sizes = ", ".join(f"{n:,}" for n in plan.tick_sizes)
    out(
        f"\n3+4. ticks and memory, in-process QueuesProcessor ({sizes} entries; a fresh process each; "
        f"one tick = {partitions} handle() calls, one per partition)"
    )
    results: dict[str, Any] = {}
    for n in plan.tick_sizes:
        log(f"ticks: {n:,} entries (subprocess)")
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--tick-child",
                str(n),
                "--partitions",
                str(partitions),
                "--quiet-ticks",
                str(plan.quiet_ticks),
            ],
            stdout=subprocess.PIPE,
            check=False,
            timeout=600 + n / 200,
        )
        if proc.returncode != 0:
            raise BenchError(f"tick child for {n:,} exited with {proc.returncode}")
        r = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        results[str(n)] = r
        out(
            f"  {n:>9,} entries: quiet tick {r['quiet_tick_ms_median']:.3f} ms (p99 {r['quiet_tick_ms_p99']:.3f}); "
            f"1% re-keyed {r['rekey_1pct_tick_ms_median']:.1f} ms ({r['rekey_1pct_changed']:,} changed); "
            f"1% at_risk {r['sla_1pct_tick_ms']:.1f} ms ({r['sla_1pct_events']:,} sla events)"
        )
        out(
            f"  {'':>9}          RSS {r['rss_bytes_per_item']:,} B per entry ({r['rss_before_mib']:.0f} -> "
            f"{r['rss_after_mib']:.0f} MiB); load {r['load_commands_per_s']:,.0f} commands/s; "
            f"full GC pause {r['full_gc_pause_ms']:,.0f} ms before gc.freeze()"
        )
        out(
            f"  {'':>9}          the worker's 5 s gauge refresh (publish_queue_gauges) "
            f"{r['gauge_refresh_ms']:,.1f} ms on the event loop"
        )
    if 1_000_000 not in plan.tick_sizes:
        out(
            "  (1,000,000 entries: --full only: loading them through handle() alone takes 3-8 minutes "
            "on 2 cores and about 4.5 GB)"
        )
    return results


# --- 5. recovery ---------------------------------------------------------------------------------


def table_templates(queues: int) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """Return, per queue, the workitems envelope and the queue entry that item W{j} stores."""
    rules = load_rulebook(RULES)
    names = TopicNames("bench-tmpl")
    wp = WorkitemsProcessor(rules=rules, names=names, metrics=Metrics())
    qp = QueuesProcessor(rules=rules, names=names, metrics=Metrics(), partitions=4)
    events = lifecycle_events(queues, 0, queues, datetime.now(UTC) - timedelta(minutes=5))
    items: dict[int, bytes] = {}
    entries: dict[int, bytes] = {}
    now = datetime.now(UTC)
    for j, (key, value) in enumerate(events):
        r = wp.handle(names.events, 0, j, key, value, lambda k: None, now)
        items[j] = next(v for k, v in r.writes if v is not None)
        for o in r.outputs:
            if o.topic == names.queue_commands:
                qr = qp.handle(names.queue_commands, 0, j, o.key, o.value, now)
                entries[j] = next(v for k, v in qr.writes if v is not None)
    return items, entries


def changelog_records(
    n: int, prefix: str, partitions: int, queues: int = 8
) -> Iterator[tuple[str, bytes, bytes, int | None]]:
    settings = Settings(topic_prefix=prefix, partitions=partitions)
    cl_items, cl_entries = changelog_topics(settings)
    items, entries = table_templates(queues)
    qparts = {
        j: murmur2_partition(queue_key(TENANT, f"q{j}").encode(), partitions) for j in range(queues)
    }
    for i in range(n):
        j = i % queues
        old = f"W{j:08d}".encode()
        cid = f"W{i:08d}"
        new = cid.encode()
        ikey = item_key(TENANT, cid).encode()
        yield cl_items, ikey, items[j].replace(old, new), murmur2_partition(ikey, partitions)
        yield cl_entries, table_key(TENANT, f"q{j}", cid), entries[j].replace(old, new), qparts[j]


def follow_recovery(w: WorkerProcess, n: int, timeout_s: float) -> dict[str, Any]:
    """Time a starting worker to /ready, then until its queues index is rebuilt."""
    started = time.monotonic()
    w.start(wait_ready_s=0)
    assert w.proc is not None
    pid = w.proc.pid

    def ready() -> bool:
        worker_alive(w)
        return bool((http_json(w.url + "/ready", 5) or {}).get("ready"))

    _, t_ready = wait_until(f"{w.name} ready", ready, timeout_s)
    rss_ready = rss_kib(pid)
    log(f"recovery: {w.name} ready after {t_ready - started:.1f}s; waiting for the queues index")

    def rebuilt() -> bool:
        worker_alive(w)
        text = (http_get(w.url + "/metrics", 30) or b"").decode()
        return metric_sum(text, "iwd_tick_duration_seconds_bucket", le="+Inf") > 0

    _, t_index = wait_until(f"{w.name} queues index rebuilt", rebuilt, timeout_s, 0.25)
    log(f"recovery: {w.name} index rebuilt after {t_index - started:.1f}s")
    summary = http_json(w.url + "/api/queues", 60) or {}
    depth = sum(q.get("depth", 0) for q in summary.get("queues", []))
    rss = rss_kib(pid)
    # Rebuilding blocks the event loop (and with it the consumer's heartbeats): watch whether
    # the worker drops out of ready (a rebalance) in the seconds after.
    dropped = 0
    until = time.monotonic() + 3
    while time.monotonic() < until:
        if not ready():
            dropped += 1
        time.sleep(0.25)
    still = dropped == 0
    return {
        "ready_s": round(t_ready - started, 2),
        "index_rebuilt_s": round(t_index - started, 2),
        "depth_after": depth,
        "depth_ok": depth == n,
        "rss_at_ready_mib": round(rss_ready / 1024, 1),
        "rss_mib": round(rss / 1024, 1),
        "ready_after_rebuild": still,
    }


def bench_recovery(
    kafka: str,
    plan: Plan,
    partitions: int,
    run_dir: Path,
    prefix_base: str,
    procs: list[Any],
    rss_empty_mib: float | None,
) -> dict[str, Any]:
    out(
        "\n5. recovery: changelogs of both tables produced directly, then a fresh worker (empty data "
        "dir), then a restart on the same data dir"
    )
    results: dict[str, Any] = {}
    for n in plan.recovery_sizes:
        prefix = f"{prefix_base}-{n // 1000}k"
        settings = Settings(bootstrap_servers=kafka, topic_prefix=prefix, partitions=partitions)
        provision_topics(settings, kafka)
        log(f"recovery: producing {n:,} items to both changelogs")
        t = time.monotonic()
        producer = make_producer(kafka, linger_ms=50, batch_size=1_000_000)
        records = produce_all(producer, changelog_records(n, prefix, partitions))
        produced_s = time.monotonic() - t
        r: dict[str, Any] = {
            "items": n,
            "changelog_records": records,
            "produce_s": round(produced_s, 1),
        }
        timeout = 180 + n / 500
        w = WorkerProcess(
            bootstrap=kafka,
            data_dir=run_dir / f"recovery-{n}",
            topic_prefix=prefix,
            partitions=partitions,
            rules=RULES,
            name=f"recovery-{n}",
            offer_timeout_s=120.0,
        )
        procs.append(w)
        try:
            r["fresh"] = follow_recovery(w, n, timeout)
        finally:
            w.stop()
        f = r["fresh"]
        f["records_per_s_to_ready"] = round(records / f["ready_s"])
        if rss_empty_mib:
            f["rss_bytes_per_item"] = round((f["rss_mib"] - rss_empty_mib) * 1024 * 1024 / n)
        out(f"  {n:>9,} items ({records:,} changelog records, produced in {produced_s:.1f} s):")
        out(
            f"    fresh worker:   ready {f['ready_s']:.1f} s, queues index rebuilt {f['index_rebuilt_s']:.1f} s "
            f"(depth {f['depth_after']:,}{' ok' if f['depth_ok'] else ' MISMATCH'}), RSS {f['rss_mib']:.0f} MiB"
            + (
                f" ({f['rss_bytes_per_item']:,} B per item over an empty worker)"
                if "rss_bytes_per_item" in f
                else ""
            )
            + (
                ""
                if f["ready_after_rebuild"]
                else "; NOT ready right after the rebuild (rebalancing)"
            )
        )
        log(f"recovery: restarting {w.name} on the same data dir")
        w2 = WorkerProcess(
            bootstrap=kafka,
            data_dir=run_dir / f"recovery-{n}",
            topic_prefix=prefix,
            partitions=partitions,
            rules=RULES,
            name=f"recovery-{n}-restart",
            offer_timeout_s=120.0,
        )
        procs.append(w2)
        try:
            r["restart"] = follow_recovery(w2, n, timeout)
        finally:
            w2.stop()
        s = r["restart"]
        out(
            f"    restart:        ready {s['ready_s']:.1f} s, queues index rebuilt {s['index_rebuilt_s']:.1f} s "
            f"(depth {s['depth_after']:,}{' ok' if s['depth_ok'] else ' MISMATCH'}), RSS {s['rss_mib']:.0f} MiB"
            + (
                ""
                if s["ready_after_rebuild"]
                else "; NOT ready right after the rebuild (rebalancing)"
            )
        )
        results[str(n)] = r
        shutil.rmtree(run_dir / f"recovery-{n}", ignore_errors=True)
    if 1_000_000 not in plan.recovery_sizes:
        out("  (1,000,000 items: --full only)")
    return results


# --- summary -------------------------------------------------------------------------------------


def summary_rows(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, value: Any, fmt: str, target: str = "", ok: bool | None = None) -> None:
        text = "-" if value is None else format(value, fmt)
        verdict = "" if ok is None else ("met" if ok else "MISSED")
        rows.append((label, text, target, verdict))

    tp = res.get("throughput") or {}
    pipe = tp.get("pipeline") or {}
    for mode in ("consume", "passthrough", "tablehop"):
        if mode in tp:
            add(f"bare Faust {mode}, events/s", tp[mode]["events_per_s"], ",.0f")
    if pipe:
        eps = pipe["events_per_s"]
        add("pipeline, both stages, events/s (1 worker)", eps, ",.0f", ">= 5,000", eps >= 5000)
        ratio = tp.get("ratio_vs_passthrough")
        if ratio is not None:
            add("ratio pipeline / passthrough", ratio, ".2f", ">= 0.5", ratio >= 0.5)
        if tp.get("ratio_vs_tablehop") is not None:
            add("ratio pipeline / table hop", tp["ratio_vs_tablehop"], ".2f")
        add("pipeline CPU per event, ms", pipe["cpu_ms_per_event"], ".3f")
    if "in_process" in tp:
        add("processors alone in-process, events/s", tp["in_process"]["events_per_s"], ",.0f")
    d = res.get("dispatch") or {}
    if d:
        add("dispatch latency p50, ms", d["p50_ms"], ".1f")
        add("dispatch latency p99, ms", d["p99_ms"], ".1f", "<= 50", d["p99_ms"] <= 50)
    ticks = res.get("ticks") or {}
    for n, r in ticks.items():
        quiet = r["quiet_tick_ms_median"]
        target, ok = ("<= 1", quiet <= 1) if int(n) >= 1_000_000 else ("", None)
        add(f"quiet tick, {int(n):,} items, ms", quiet, ".3f", target, ok)
        add(f"1% re-keyed tick, {int(n):,} items, ms", r["rekey_1pct_tick_ms_median"], ".1f")
        add(f"1% at_risk tick, {int(n):,} items, ms", r["sla_1pct_tick_ms"], ".1f")
    if ticks and "1000000" not in ticks:
        rows.append(("quiet tick, 1,000,000 items, ms", "(--full)", "<= 1", ""))
    for n, r in ticks.items():
        b = r["rss_bytes_per_item"]
        add(f"RSS per queued item, in-process, {int(n):,}", b, ",.0f", "<= 1,024 B", b <= 1024)
    if d:
        add("worker RSS per item (both stages), B", d["worker_rss_bytes_per_item"], ",.0f")
    for n, r in (res.get("recovery") or {}).items():
        f, s = r["fresh"], r["restart"]
        add(f"recovery {int(n):,}: fresh worker ready, s", f["ready_s"], ".1f")
        add(f"recovery {int(n):,}: fresh, index rebuilt, s", f["index_rebuilt_s"], ".1f")
        add(f"recovery {int(n):,}: restart ready, s", s["ready_s"], ".1f")
        add(f"recovery {int(n):,}: restart, index rebuilt, s", s["index_rebuilt_s"], ".1f")
        if "rss_bytes_per_item" in f:
            add(f"worker RSS per recovered item ({int(n):,}), B", f["rss_bytes_per_item"], ",.0f")
    if res.get("recovery") and "1000000" not in res["recovery"]:
        rows.append(("recovery 1,000,000", "(--full)", "", ""))
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(max(len(r[2]) for r in rows), len("target"))
    out(f"\n{'figure':<{w0}}  {'value':>{w1}}  {'target':<{w2}}  verdict")
    out("-" * (w0 + w1 + w2 + 13))
    for label, value, target, verdict in rows:
        out(f"{label:<{w0}}  {value:>{w1}}  {target:<{w2}}  {verdict}")


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except OSError:
            return ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "modified": git("status", "--porcelain", "iwd_stream").splitlines(),
    }


def delete_topics(kafka: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                fut.result()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="about 2 minutes, smaller sizes")
    size.add_argument(
        "--full", action="store_true", help="adds the 1M-item tick and recovery cases"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench-pipeline.json")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--only",
        default="throughput,dispatch,ticks,recovery",
        help="comma-separated sections to run (default: all)",
    )
    parser.add_argument("--keep", action="store_true", help="keep worker data dirs and logs")
    parser.add_argument("--tick-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--quiet-ticks", type=int, default=200, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tick_child:
        print(json.dumps(tick_child(args.tick_child, args.partitions, args.quiet_ticks)))
        return 0

    plan = PLANS["quick" if args.quick else "full" if args.full else "default"]
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    run_id = time.strftime("%m%d-%H%M%S")
    prefix = f"bench-{run_id}"
    run_dir = ROOT / "var" / "bench-pipeline" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    out(
        f"iwd-stream pipeline benchmark ({plan.name}): Python {platform.python_version()} on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {loadavg()}"
    )
    meta: dict[str, Any] = {
        "plan": asdict(plan),
        "started_at": datetime.now(UTC).isoformat(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": loadavg(),
        "git": git_state(),
        "run_dir": str(run_dir),
    }
    results: dict[str, Any] = {"meta": meta}
    procs: list[Any] = []
    errors: dict[str, str] = {}
    try:
        with obtain_kafka(Settings.from_env(), progress=log) as endpoint:
            kafka = endpoint.bootstrap_servers
            meta["broker"] = {
                "bootstrap": kafka,
                "origin": endpoint.origin,
                "detail": endpoint.detail,
            }
            out(f"broker: {kafka} ({endpoint.origin}); topic prefix {prefix}; work dir {run_dir}")
            sections: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                (
                    "throughput",
                    lambda: bench_throughput(
                        kafka, plan, args.partitions, run_dir, f"{prefix}-tp", procs
                    ),
                ),
                (
                    "dispatch",
                    lambda: bench_dispatch(
                        kafka, plan, args.partitions, run_dir, f"{prefix}-dl", procs
                    ),
                ),
                ("ticks", lambda: bench_ticks(plan, args.partitions)),
                (
                    "recovery",
                    lambda: bench_recovery(
                        kafka,
                        plan,
                        args.partitions,
                        run_dir,
                        f"{prefix}-rc",
                        procs,
                        (results.get("dispatch") or {}).get("worker_rss_empty_mib"),
                    ),
                ),
            ]
            try:
                for name, run in sections:
                    if name not in only:
                        continue
                    t = time.monotonic()
                    load_before = loadavg()
                    try:
                        results[name] = run()
                    except Exception as exc:  # noqa: BLE001 - report it, go on with the next
                        errors[name] = f"{type(exc).__name__}: {exc}"
                        log(f"{name}: FAILED: {errors[name]}")
                        traceback.print_exc(file=sys.stderr)
                        out(f"  {name}: not measured ({errors[name]})")
                    meta.setdefault("sections", {})[name] = {
                        "seconds": round(time.monotonic() - t, 1),
                        "loadavg_before": load_before,
                        "loadavg_after": loadavg(),
                    }
            finally:
                for p in procs:
                    with contextlib.suppress(Exception):
                        p.stop() if isinstance(p, WorkerProcess) else p.kill()
                if endpoint.origin == "env":
                    log(f"deleting topics {prefix}*")
                    with contextlib.suppress(Exception):
                        delete_topics(kafka, prefix)
    finally:
        meta["seconds"] = round(time.monotonic() - T_START, 1)
        meta["loadavg_end"] = loadavg()
        meta["errors"] = errors
        rows = summary_rows(results)
        results["summary"] = [
            dict(zip(("figure", "value", "target", "verdict"), r, strict=True)) for r in rows
        ]
        if rows:
            print_table(rows)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        out(
            f"\nran {meta['seconds']:.0f} s ({plan.name}); load average at the end {meta['loadavg_end']}; "
            f"JSON: {args.json}; no plot (matplotlib is not installed)"
        )
        if not args.keep and not errors:
            shutil.rmtree(run_dir, ignore_errors=True)
        elif errors:
            out(f"logs kept in {run_dir}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
