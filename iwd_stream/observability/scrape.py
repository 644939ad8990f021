"""Read figures out of a worker's Prometheus text (the demo's summary, the end-to-end tests)."""

from __future__ import annotations

from collections import Counter


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum the samples of ``name`` whose labels include ``labels``.

    >>> text = 'iwd_x_total{stage="a",outcome="ok"} 2.0\\niwd_x_total{stage="b",outcome="ok"} 3.0'
    >>> metric_sum(text, "iwd_x_total", outcome="ok"), metric_sum(text, "iwd_x_total", stage="b")
    (5.0, 3.0)
    """
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_by_label(text: str, name: str, label: str) -> dict[str, int]:
    """Return the samples of ``name`` summed per value of ``label``."""
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith(name + "{") and f'{label}="' in line:
            value = line.split(f'{label}="', 1)[1].split('"', 1)[0]
            out[value] += int(float(line.rsplit(" ", 1)[1]))
    return dict(out)


def histogram_mean(text: str, name: str, **labels: str) -> float:
    """Return the mean of a histogram (sum / count), 0 when empty."""
    count = metric_sum(text, name + "_count", **labels)
    return metric_sum(text, name + "_sum", **labels) / count if count else 0.0


SOURCE_TYPES = ("create", "update", "complete", "cancel", "hold", "resume", "restart")


def source_events(text: str, outcome: str) -> int:
    """Count the source's own lifecycle events with ``outcome`` (internal events left out)."""
    return int(
        sum(
            metric_sum(text, "iwd_events_total", stage="workitems", type=t, outcome=outcome)
            for t in SOURCE_TYPES
        )
    )
