"""The demo: the bundled ServiceNow incident log through the whole engine, end to end.

Kafka (as the tests obtain it) → topics → a worker process → simulated employees → the log
replayed time-compressed → a live view of the Universal Queue (terminal, and the worker's web
page at /ui) → a summary. Everything it starts, it stops.
"""

from __future__ import annotations

import contextlib
import csv
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from iwd_stream.connectors.mapping import builtin_data_file
from iwd_stream.connectors.output import ProgressBar
from iwd_stream.connectors.replay import ReplaySummary, replay
from iwd_stream.connectors.simulator import draw_employees, run_simulator
from iwd_stream.devkafka import obtain_kafka
from iwd_stream.kafka.producer import make_producer
from iwd_stream.observability.scrape import (
    histogram_mean,
    metric_by_label,
    metric_sum,
    source_events,
)
from iwd_stream.procs import WorkerProcess
from iwd_stream.settings import Settings
from iwd_stream.streaming.app import provision_topics
from iwd_stream.topics import TopicNames

DATA = "servicenow_incident_events.csv"
TENANT = "servicenow"
# The queues and skills of iwd_stream/rules/servicenow.yaml.
QUEUES = (
    "sn-service-desk",
    "sn-network",
    "sn-applications",
    "sn-infrastructure",
    "sn-field-support",
    "sn-database",
    "sn-general",
)
SKILLS = ("network", "software", "hardware", "access", "email", "telephony", "it-general")
MEDIA = ("voice", "email", "web", "in-person")
FINAL_STATES = ("Resolved", "Closed")


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class SourceFacts:
    """What the log itself says, to set the engine's figures beside."""

    incidents: list[str] = field(default_factory=list)
    resolved_at: dict[str, datetime] = field(default_factory=dict)
    made_sla: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> SourceFacts:
        facts = cls()
        seen: set[str] = set()
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                number = row["number"]
                if number not in seen:
                    seen.add(number)
                    facts.incidents.append(number)
                facts.made_sla[number] = row["made_sla"].upper() == "TRUE"  # last row wins
                if row["incident_state"] in FINAL_STATES and number not in facts.resolved_at:
                    at = datetime.strptime(row["sys_updated_at"], "%d-%m-%Y %H:%M")
                    facts.resolved_at[number] = at.replace(tzinfo=UTC)
        return facts


def _live_view(worker: WorkerProcess) -> str:
    """Render the top of every non-empty queue as a small table."""
    queues = [q for q in worker.get("/api/queues").get("queues", []) if q["depth"]]
    lines = [f"{'queue':20s} {'depth':>5s} {'offered':>7s}  top items (score · priority · SLA)"]
    for q in queues:
        top = worker.get(f"/api/queues/{q['tenant']}/{q['queue']}?top=3").get("items", [])
        cells = "  ".join(
            f"{i['capture_id']} {i['score']:.0f}·{i['priority']}·{i['sla_state']}" for i in top
        )
        lines.append(f"{q['queue']:20s} {q['depth']:5d} {q['offered']:7d}  {cells}")
    return "\n".join(lines)


def _wait_drained(worker: WorkerProcess, timeout_s: float = 90.0) -> float:
    """Wait until the worker's processed-event count stops moving; return it."""
    last, stable_since = -1.0, time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = metric_sum(worker.metrics_text(), "iwd_events_total", stage="workitems")
        if count != last:
            last, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since >= 4.0:
            break
        time.sleep(0.5)
    return last


def run_demo(
    settings: Settings, *, speed: float = 20000.0, employees: int = 24, keep_running: float = 0.0
) -> int:
    """Run the demo to its summary; return the exit code."""
    path = builtin_data_file(DATA)
    facts = SourceFacts.read(path)
    # Under var/ (git-ignored): the worker's log stays there for a look after the run.
    root = Path("var") / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    stop = threading.Event()
    with obtain_kafka(settings, progress=say) as kafka:
        prefix = f"demo{datetime.now(UTC):%Y%m%d%H%M%S}"
        names = TopicNames(prefix)
        run_settings = settings.model_copy(
            update={"bootstrap_servers": kafka.bootstrap_servers, "topic_prefix": prefix}
        )
        provision_topics(run_settings, kafka.bootstrap_servers)
        say(f"topics provisioned under prefix {prefix!r} on {kafka.bootstrap_servers}")
        worker = WorkerProcess(
            bootstrap=kafka.bootstrap_servers,
            data_dir=root / "worker",
            topic_prefix=prefix,
            partitions=run_settings.partitions,
            name="demo-worker",
        )
        stats: Counter[str] = Counter()
        threads: list[threading.Thread] = []
        try:
            started = time.monotonic()
            worker.start()
            say(f"worker ready in {time.monotonic() - started:.1f}s; live view: {worker.url}/ui")
            staff = draw_employees(TENANT, QUEUES, employees, skills=SKILLS, media_types=MEDIA)

            def simulate() -> None:
                stats.update(
                    run_simulator(
                        kafka.bootstrap_servers,
                        make_producer(kafka.bootstrap_servers),
                        names,
                        staff,
                        speed=400.0,
                        stop=stop,
                        group_id=f"{prefix}-simulator",
                    )
                )

            threads.append(threading.Thread(target=simulate, name="simulator", daemon=True))
            threads[-1].start()
            say(f"{len(staff)} simulated employees serve {len(QUEUES)} queues")

            done: dict[str, ReplaySummary] = {}

            def do_replay() -> None:
                done["summary"] = replay(
                    path,
                    "servicenow",
                    make_producer(kafka.bootstrap_servers),
                    names,
                    speed=speed,
                    max_gap_s=3600,
                    progress=ProgressBar("replay servicenow"),
                )

            replayer = threading.Thread(target=do_replay, name="replay", daemon=True)
            replay_started = time.monotonic()
            replayer.start()
            while replayer.is_alive():
                replayer.join(8.0)
                with contextlib.suppress(OSError, ValueError):
                    say("\n" + _live_view(worker) + "\n")
            if "summary" not in done:
                say("replay failed; see the error above")
                return 1
            summary = done["summary"]
            replay_s = time.monotonic() - replay_started
            processed = _wait_drained(worker)
            say("\n" + _live_view(worker) + "\n")
            if keep_running > 0:
                say(f"web view stays up for {keep_running:.0f}s: {worker.url}/ui")
                time.sleep(keep_running)
            report = _summarise(worker, facts, summary, processed, replay_s, stats)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
            worker.stop()
            shutil.rmtree(worker.data_dir, ignore_errors=True)
    out = Path("var")
    out.mkdir(exist_ok=True)
    (out / "demo-summary.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    _print_report(report)
    say(f"summary in var/demo-summary.json, worker log in {worker.log_file}; nothing left running")
    return 0


def _summarise(
    worker: WorkerProcess,
    facts: SourceFacts,
    summary: ReplaySummary,
    processed: float,
    replay_s: float,
    sim: Counter[str],
) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    attained = breached = 0
    for number in facts.incidents:
        item = worker.get(f"/api/items/{TENANT}/{number}")
        statuses[item.get("status", "missing")] += 1
        due = (item.get("fields") or {}).get("due_at")
        resolved = facts.resolved_at.get(number)
        if due and resolved:
            if resolved <= datetime.fromisoformat(due):
                attained += 1
            else:
                breached += 1
    metrics = worker.metrics_text()
    judged = attained + breached
    made = sum(facts.made_sla.values())
    return {
        "incidents_in_log": len(facts.incidents),
        "rows_replayed": summary.rows_read,
        "events_produced": summary.events_produced,
        "events_by_type": dict(summary.events_by_type),
        "items_captured": sum(n for s, n in statuses.items() if s != "missing"),
        "status": dict(statuses),
        "completed": statuses["completed"],
        "still_queued": statuses["queued"] + statuses["assigned"],
        "sla": {
            "judged": judged,
            "attained": attained,
            "breached": breached,
            "attained_share": round(attained / judged, 3) if judged else None,
            "source_made_sla_share": round(made / len(facts.made_sla), 3),
        },
        "dead_lettered": int(metric_sum(metrics, "iwd_deadlettered_total")) + summary.dead_lettered,
        "dead_lettered_by_reason": metric_by_label(metrics, "iwd_deadlettered_total", "reason"),
        # Counted over the source's own events (the engine's internal ones are not rows).
        "duplicates_recognised": source_events(metrics, "duplicate"),
        "stale_recognised": source_events(metrics, "stale"),
        "unchanged_rows": source_events(metrics, "unchanged"),
        "updates_after_completion": int(
            metric_sum(
                metrics, "iwd_events_total", stage="workitems", type="update", outcome="rejected"
            )
        ),
        "assignments": {
            "offered": int(metric_sum(metrics, "iwd_assignments_total", outcome="offered")),
            "accepted": int(metric_sum(metrics, "iwd_assignments_total", outcome="accepted")),
            "declined": int(metric_sum(metrics, "iwd_assignments_total", outcome="declined")),
            "timed_out": int(metric_sum(metrics, "iwd_assignments_total", outcome="timed_out")),
            "revoked": int(metric_sum(metrics, "iwd_assignments_total", outcome="revoked")),
            "simulator": dict(sim),
        },
        "events_processed": int(processed),
        "engine_ms_per_event": {
            stage: round(1000 * histogram_mean(metrics, "iwd_processing_seconds", stage=stage), 3)
            for stage in ("workitems", "queues")
        },
        "replay_seconds": round(replay_s, 1),
        "replay_events_per_s": round(summary.events_produced / replay_s, 1) if replay_s else None,
    }


def _print_report(r: dict[str, Any]) -> None:
    sla = r["sla"]
    a = r["assignments"]
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["dead_lettered_by_reason"].items()))
    rows = [
        ("incidents in the log", r["incidents_in_log"]),
        ("rows replayed / events produced", f"{r['rows_replayed']} / {r['events_produced']}"),
        ("items captured", r["items_captured"]),
        ("completed", r["completed"]),
        ("still queued (queued + assigned)", r["still_queued"]),
        ("status of every item", ", ".join(f"{k} {v}" for k, v in sorted(r["status"].items()))),
        (
            "SLA attained vs breached (rules' due times)",
            f"{sla['attained']} vs {sla['breached']} ({_pct(sla['attained_share'])} attained)",
        ),
        ("the source's own made_sla share", _pct(sla["source_made_sla_share"])),
        ("dead-lettered (by reason)", f"{r['dead_lettered']} ({reasons})"),
        (
            "source events: duplicate / stale / unchanged",
            f"{r['duplicates_recognised']} / {r['stale_recognised']} / {r['unchanged_rows']}",
        ),
        ("updates of finished items (recorded, ignored)", r["updates_after_completion"]),
        (
            "offers: made / accepted / declined / timed out / revoked",
            f"{a['offered']} / {a['accepted']} / {a['declined']} / {a['timed_out']} / {a['revoked']}",
        ),
        ("events processed by the engine", r["events_processed"]),
        (
            "engine time per event (workitems / queues)",
            f"{r['engine_ms_per_event']['workitems']} ms / {r['engine_ms_per_event']['queues']} ms",
        ),
        ("replay pace, time-compressed (events/s)", r["replay_events_per_s"]),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n=== iwd-stream demo summary " + "=" * 40)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("=" * 68)
    sys.stdout.flush()


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}%"
