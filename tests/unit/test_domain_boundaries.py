"""The domain package stays pure, and the checked-in JSON Schemas match the contracts."""

from __future__ import annotations

import ast
from pathlib import Path

import iwd_stream.domain
from iwd_stream.contracts.export import stale_files

DOMAIN = Path(iwd_stream.domain.__file__).parent
FORBIDDEN_MODULES = {"faust", "aiokafka", "confluent_kafka", "prometheus_client", "os", "mode"}
# Reading the clock is the caller's job: `now` is a parameter everywhere in the domain.
FORBIDDEN_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
    ("time", "time_ns"),
}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            if name.split(".")[0] in FORBIDDEN_MODULES or name == "time":
                out.append(f"{path.name}:{node.lineno}: imports {name}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            base = node.func.value
            base_name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
            if (base_name, node.func.attr) in FORBIDDEN_CALLS:
                out.append(
                    f"{path.name}:{node.lineno}: reads the clock ({base_name}.{node.func.attr})"
                )
    return out


def test_domain_imports_no_kafka_faust_prometheus_or_os_and_reads_no_clock() -> None:
    files = sorted(DOMAIN.rglob("*.py"))
    assert files
    problems = [v for f in files for v in _violations(f)]
    assert problems == []


def test_boundary_scan_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os\nfrom faust import App\nfrom datetime import datetime\nx = datetime.now()\n"
    )
    assert len(_violations(bad)) == 3


def test_schemas_directory_is_current() -> None:
    stale = stale_files()
    assert stale == [], f"schemas/ is stale ({stale}); run: python -m iwd_stream.contracts.export"


def test_worked_examples_in_docstrings_hold() -> None:
    import doctest
    import importlib

    failures = 0
    for path in sorted(DOMAIN.glob("*.py")):
        module = importlib.import_module(f"iwd_stream.domain.{path.stem}")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        failures += result.failed
    assert failures == 0
