"""Mapping files and the row mapper on the bundled real data (no broker)."""

from __future__ import annotations

import base64
import csv
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from connector_fakes import FakeProducer

from iwd_stream.connectors.mapper import RowMapper
from iwd_stream.connectors.mapping import builtin_data_file, load_mapping, parse_mapping
from iwd_stream.connectors.replay import plan_replay, replay
from iwd_stream.contracts.codec import decode
from iwd_stream.contracts.models import DeadLetter, EventType, LifecycleEvent, Status
from iwd_stream.errors import ConfigError
from iwd_stream.topics import TopicNames

SERVICENOW = builtin_data_file("servicenow_incident_events.csv")
NYC311 = builtin_data_file("nyc311_service_requests.csv")
FIXTURES = Path(__file__).parent / "connector_fixtures"


def fold_status(events: list[LifecycleEvent]) -> dict[str, Status]:
    """Apply events the way the engine promises to: duplicate ids and older versions skipped."""
    seen_ids: set[str] = set()
    version: dict[str, int] = {}
    status: dict[str, Status] = {}
    to = {
        EventType.CREATE: Status.QUEUED,
        EventType.HOLD: Status.HELD,
        EventType.RESUME: Status.QUEUED,
        EventType.COMPLETE: Status.COMPLETED,
        EventType.CANCEL: Status.CANCELED,
        EventType.RESTART: Status.QUEUED,
    }
    for e in events:
        if e.event_id in seen_ids:
            continue
        seen_ids.add(e.event_id)
        if e.version is not None and e.version < version.get(e.capture_id, -1):
            continue
        if e.version is not None:
            version[e.capture_id] = e.version
        if e.type in to:
            status[e.capture_id] = to[e.type]
    return status


def servicenow_rows() -> list[dict[str, str]]:
    with SERVICENOW.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_servicenow_every_incident_ends_as_its_last_row_says() -> None:
    plan = plan_replay(SERVICENOW, load_mapping("servicenow"))
    assert plan.rows_read == 4537 and plan.items == 667 and not plan.bad
    last_state = {r["number"]: r["incident_state"] for r in servicenow_rows()}
    implied = {
        "Closed": Status.COMPLETED,
        "Resolved": Status.COMPLETED,
        "Awaiting User Info": Status.HELD,
        "Awaiting Problem": Status.HELD,
        "New": Status.QUEUED,
        "Active": Status.QUEUED,
    }
    status = fold_status([p.event for p in plan.events])
    assert len(status) == 667
    wrong = {n: (s, status[n]) for n, s in last_state.items() if status[n] is not implied[s]}
    assert wrong == {}


def test_servicenow_each_row_yields_events_and_the_first_one_creates() -> None:
    mapper = RowMapper(load_mapping("servicenow"))
    first_seen: set[str] = set()
    for row in servicenow_rows():
        events = mapper.map_row(row)
        assert events, row
        if row["number"] not in first_seen:
            first_seen.add(row["number"])
            assert events[0].type is EventType.CREATE
            attrs = events[0].fields.attributes or {}
            assert attrs["priority"] == row["priority"]
            group = row["assignment_group"]
            assert attrs.get("assignment_group") == (None if group == "?" else group)
            assert attrs["made_sla"] is (row["made_sla"] == "TRUE")
            assert "assigned_to" not in attrs or row["assigned_to"] != "?"
        else:
            assert all(e.type is not EventType.CREATE for e in events)
        for e in events:
            assert e.version == int(row["sys_mod_count"])
            assert e.key == f"servicenow/{row['number']}"


def test_servicenow_timestamps_are_read_as_utc() -> None:
    mapper = RowMapper(load_mapping("servicenow"))
    event = mapper.map_row(servicenow_rows()[0])[0]
    assert event.occurred_at == datetime(2016, 2, 29, 1, 23, tzinfo=UTC)
    assert event.fields.created_at == datetime(2016, 2, 29, 1, 16, tzinfo=UTC)


def test_duplicate_rows_yield_identical_event_ids_and_reruns_are_identical() -> None:
    rows = servicenow_rows()
    mapping = load_mapping("servicenow")
    run1 = [e.event.event_id for e in plan_replay(SERVICENOW, mapping).events]
    run2 = [e.event.event_id for e in plan_replay(SERVICENOW, mapping).events]
    assert run1 == run2
    # A row repeated verbatim right after itself maps to the same ids.
    mapper = RowMapper(mapping)
    once = [e.event_id for e in mapper.map_row(rows[1])]
    mapper2 = RowMapper(mapping)
    mapper2.map_row(rows[0])
    again = mapper2.map_row(rows[1])
    repeat = mapper2.map_row(rows[1])
    assert [e.event_id for e in again][0] == [e.event_id for e in repeat][0]
    assert once[0] == again[0].event_id
    # The real log: INC0000137 repeats (version 1, New) with another timestamp.
    ids = Counter(run1)
    assert [i for i, n in ids.items() if n > 1] == ["servicenow:INC0000137:1:New"]


def test_out_of_order_and_same_version_rows_are_emitted_not_fixed() -> None:
    plan = plan_replay(SERVICENOW, load_mapping("servicenow"))
    per_item: dict[str, list[LifecycleEvent]] = defaultdict(list)
    for p in plan.events:
        per_item[p.event.capture_id].append(p.event)
    versions = [e.version for e in per_item["INC0000135"]]
    # File order is kept per item: v7 first, then the late v1..v6, then v7 again (Closed).
    assert versions[:7] == [7, 1, 2, 3, 4, 5, 6] and versions[-1] == 7
    assert per_item["INC0000135"][-1].type is EventType.COMPLETE
    assert per_item["INC0000135"][-1].event_id.startswith("servicenow:INC0000135:7:Closed")


def test_nyc311_one_create_per_request_and_complete_when_closed() -> None:
    plan = plan_replay(NYC311, load_mapping("nyc311"))
    with NYC311.open(newline="") as fh:
        rows = {r["unique_key"]: r for r in csv.DictReader(fh)}
    by_item: dict[str, list[LifecycleEvent]] = defaultdict(list)
    for p in plan.events:
        by_item[p.event.capture_id].append(p.event)
    assert len(by_item) == 1000 == len(rows)
    ny = ZoneInfo("America/New_York")
    for key, events in by_item.items():
        row = rows[key]
        assert events[0].type is EventType.CREATE
        fields = events[0].fields
        assert fields.department == row["agency"]
        assert fields.created_at == datetime.fromisoformat(row["created_date"]).replace(tzinfo=ny)
        if row["due_date"]:
            assert fields.due_at == datetime.fromisoformat(row["due_date"]).replace(tzinfo=ny)
        assert (fields.attributes or {})["complaint_type"] == row["complaint_type"]
        if row["status"] == "Closed":
            assert [e.type for e in events] == [EventType.CREATE, EventType.COMPLETE]
            # One Closed request has no closed_date: it completes at its creation time.
            closed = row["closed_date"] or row["created_date"]
            assert events[1].occurred_at == datetime.fromisoformat(closed).replace(tzinfo=ny)
        else:
            assert [e.type for e in events] == [EventType.CREATE]
    assert sum(len(v) for v in by_item.values()) == 1000 + sum(
        r["status"] == "Closed" for r in rows.values()
    )


def test_bad_rows_become_dead_letters_with_line_numbers(tmp_path: Path) -> None:
    lines = SERVICENOW.read_text().splitlines(keepends=True)[:12]
    lines[3] = lines[3].replace("29-02-2016 11:29", "31-02-2016 99:99", 1)  # bad timestamp
    lines[6] = "INC0000047,Frozen" + lines[6][len("INC0000047,Active") :]  # unknown state
    lines[7] = "INC0000047,New,TRUE\n"  # too few fields
    lines[9] = "?" + lines[9][len("INC0000047") :]  # no capture id
    source = tmp_path / "incidents.csv"
    source.write_text("".join(lines))
    producer = FakeProducer()
    topics = TopicNames("t")
    summary = replay(source, "servicenow", producer, topics)
    assert summary.rows_read == 11
    assert summary.dead_lettered == 4
    assert [b.line for b in summary.bad_rows] == [4, 7, 8, 10]
    letters = [decode(s.value, DeadLetter) for s in producer.on(topics.deadletter)]
    assert [d.offset for d in letters] == [4, 7, 8, 10]
    assert all(d.topic == str(source) for d in letters)
    assert base64.b64decode(letters[1].original_b64).decode() == lines[6]
    assert "unknown state 'Frozen'" in letters[1].error
    assert "sys_updated_at" in letters[0].error or "resolved_at" in letters[0].error
    assert "row has 3 fields" in letters[2].error
    assert "'number'" in letters[3].error
    events = [decode(s.value, LifecycleEvent) for s in producer.on(topics.events)]
    assert len(events) == summary.events_produced >= 7
    assert all(
        s.key == f"servicenow/{e.capture_id}".encode()
        for s, e in zip(producer.on(topics.events), events, strict=True)
    )


def test_unknown_column_fails_when_the_file_is_opened(tmp_path: Path) -> None:
    text = (
        Path(__file__).parents[2] / "iwd_stream/connectors/mappings/servicenow.yaml"
    ).read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  - u_symptom\n", "  - u_symptomz\n"))
    mapping = load_mapping(bad)
    with pytest.raises(ConfigError) as err:
        replay(SERVICENOW, mapping, FakeProducer(), TopicNames())
    message = str(err.value)
    assert str(bad) in message and "attributes.u_symptomz" in message and str(SERVICENOW) in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("    Awaiting Problem: hold\n", "    Awaiting Problem: snooze\n"),
            "lifecycle.states.Awaiting Problem: unknown value 'snooze' (expected one of: open, hold, complete, cancel)",
        ),
        (
            ("  created_at: opened_at\n", "  created_at: caller_id\n"),
            "fields.created_at: created_at needs a datetime column",
        ),
        (
            ("  channel: contact_type\n", "  chanel: contact_type\n"),
            "fields.chanel: unknown work-item field",
        ),
        (
            ("version: sys_mod_count\n", "version: caller_id\n"),
            "version: column 'caller_id' must be declared with type: int",
        ),
        (
            ("  made_sla: bool\n", "  made_sla: boolean\n"),
            "columns.made_sla.type: unknown value 'boolean'",
        ),
        (
            ('"{source}:{capture_id}:{version}:{state}"', '"{source}:{row}"'),
            "event_id: unknown placeholder {row}",
        ),
        (
            (
                "    - made_sla\n    - reassignment_count",
                "    - sys_created_by\n    - reassignment_count",
            ),
            "lifecycle.update_on[6]: column 'sys_created_by' feeds no field or attribute",
        ),
    ],
)
def test_invalid_mapping_fails_at_load_with_path_and_problem(
    change: tuple[str, str], expected: str
) -> None:
    text = (
        Path(__file__).parents[2] / "iwd_stream/connectors/mappings/servicenow.yaml"
    ).read_text()
    assert change[0] in text
    with pytest.raises(ConfigError) as err:
        parse_mapping(text.replace(change[0], change[1]), "my.yaml")
    assert str(err.value).startswith("mapping my.yaml: ")
    assert expected in str(err.value)


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_mapping(tmp_path / "nope.yaml")
    (tmp_path / "x.yaml").write_text("source: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_mapping(tmp_path / "x.yaml")


def test_a_third_source_needs_only_a_mapping_file() -> None:
    producer = FakeProducer()
    topics = TopicNames("t")
    summary = replay(FIXTURES / "helpdesk.jsonl", FIXTURES / "helpdesk.yaml", producer, topics)
    assert summary.tenant == "acme" and summary.rows_read == 9
    assert [(b.line, b.reason) for b in summary.bad_rows] == [
        (5, "malformed_row"),
        (7, "unknown_event"),
    ]
    events = [decode(s.value, LifecycleEvent) for s in producer.on(topics.events)]
    t1 = [e for e in events if e.capture_id == "billing:T-1"]
    assert [e.type for e in t1] == ["create", "update", "hold", "resume", "complete"]
    assert t1[0].fields.priority == 3 and t1[0].fields.department == "billing"
    assert t1[0].fields.due_at == datetime(2024, 5, 2, 15, 0, tzinfo=UTC)
    assert t1[0].fields.attributes == {"team": "blue", "vip": True}
    assert t1[1].fields.set_fields() == {"priority": 5, "department": "billing"}
    assert [e.type for e in events if e.capture_id == "billing:T-2"] == ["create", "cancel"]
    assert {s.key for s in producer.on(topics.events)} == {b"acme/billing:T-1", b"acme/billing:T-2"}


def test_speed_compresses_source_time() -> None:
    clock = [0.0]

    def sleep(s: float) -> None:
        clock[0] += s

    summary = replay(
        NYC311,
        "nyc311",
        FakeProducer(),
        TopicNames(),
        speed=3600,
        sleep=sleep,
        monotonic=lambda: clock[0],
    )
    assert summary.first_occurred_at and summary.last_occurred_at
    span = (summary.last_occurred_at - summary.first_occurred_at).total_seconds()
    assert span / 3600 <= clock[0] <= span / 3600 + 1
    clock[0] = 0.0
    replay(
        NYC311,
        "nyc311",
        FakeProducer(),
        TopicNames(),
        speed=3600,
        max_gap_s=60,
        sleep=sleep,
        monotonic=lambda: clock[0],
    )
    assert clock[0] < span / 3600
