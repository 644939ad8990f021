"""The dashboard and the alert rules only use metrics the workers really export."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from iwd_stream.observability.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def exported_names() -> set[str]:
    metrics = Metrics(CollectorRegistry())
    suffixes = {
        "counter": ("_total",),
        "histogram": ("", "_bucket", "_sum", "_count"),
        "gauge": ("",),
    }
    return {
        family.name + suffix
        for family in metrics.registry.collect()
        for suffix in suffixes[family.type]
    }


def test_every_metric_in_deploy_is_exported():
    used = set()
    for path in [*DEPLOY.glob("*.yml"), *DEPLOY.glob("grafana/*.json")]:
        used |= set(re.findall(r"\biwd_[a-z_]+", path.read_text()))
    assert used, "deploy/ should reference iwd_ metrics"
    missing = used - exported_names()
    assert not missing, f"deploy/ refers to metrics no worker exports: {sorted(missing)}"


def test_metric_names_follow_prometheus_conventions():
    for name in exported_names():
        assert re.fullmatch(r"iwd_[a-z][a-z0-9_]*", name), name
    assert "iwd_events_total" in exported_names()
    assert "iwd_dispatch_latency_seconds_bucket" in exported_names()
