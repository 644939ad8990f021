"""The bundled real data end to end: replay → worker → every item in the status its rows imply."""

from __future__ import annotations

import csv

from iwd_stream.connectors.mapping import builtin_data_file
from iwd_stream.connectors.replay import replay
from iwd_stream.observability.scrape import metric_sum, source_events

SERVICENOW = builtin_data_file("servicenow_incident_events.csv")
NYC311 = builtin_data_file("nyc311_service_requests.csv")


def _servicenow_expected() -> dict[str, str]:
    """The state of each incident's newest version (file order breaks ties)."""
    newest: dict[str, tuple[int, str]] = {}
    with SERVICENOW.open(newline="") as f:
        for row in csv.DictReader(f):
            version = int(row["sys_mod_count"])
            if row["number"] not in newest or version >= newest[row["number"]][0]:
                newest[row["number"]] = (version, row["incident_state"])
    status = {"Closed": "completed", "Resolved": "completed", "New": "queued", "Active": "queued"}
    return {n: status.get(state, "held") for n, (_, state) in newest.items()}


def test_whole_servicenow_and_311_files_end_in_the_status_their_rows_imply(engine):
    worker = engine.worker(rules=None).start()  # the bundled rules: servicenow and nyc311
    sn = replay(SERVICENOW, "servicenow", engine.producer, engine.names)
    ny = replay(NYC311, "nyc311", engine.producer, engine.names)
    assert sn.dead_lettered == 0 and ny.dead_lettered == 0

    expected_sn = _servicenow_expected()
    with NYC311.open(newline="") as f:
        rows = list(csv.DictReader(f))
    expected_ny = {
        r["unique_key"]: "completed" if r["status"] == "Closed" else "queued" for r in rows
    }
    assert len(expected_sn) == 667 and len(expected_ny) == 1000

    def statuses(tenant: str, ids) -> dict[str, str]:
        return {cid: worker.get(f"/api/items/{tenant}/{cid}").get("status") for cid in ids}

    def caught_up() -> bool:
        text = worker.metrics_text()
        return (
            metric_sum(text, "iwd_events_total", stage="workitems")
            >= sn.events_produced + ny.events_produced
        )

    engine.wait_for(caught_up, timeout_s=240, what="the replayed events processed")
    # Internal events count too, so confirm on the items themselves (a few more seconds at most).
    engine.wait_for(
        lambda: statuses("nyc311", expected_ny) == expected_ny, timeout_s=60, what="311 settled"
    )
    engine.wait_for(
        lambda: statuses("servicenow", expected_sn) == expected_sn, timeout_s=60, what="SN settled"
    )

    # The log's real quirks: one duplicated row (same id, version and state) and out-of-order
    # rows whose fields a newer version already set are recognised and change nothing.
    text = worker.metrics_text()
    assert source_events(text, "duplicate") == 1
    assert source_events(text, "stale") == 8
    # The reopened incidents (8 restarts of completed items) and their repeated closures are
    # refused transitions: recorded and dead-lettered with the reason.
    assert metric_sum(text, "iwd_deadlettered_total", reason="item_final") > 0
    one = worker.get("/api/items/servicenow/INC0000045")
    assert [h["to_status"] for h in one["history"] if h["outcome"] == "applied"][:1] == ["queued"]
    assert one["history"][-1]["to_status"] == "completed"
