"""Export a JSON Schema for every wire contract: ``python -m iwd_stream.contracts.export [DIR]``.

Writes ``<DIR>/<name>.schema.json`` for each entry of ``ALL_CONTRACTS`` (default DIR: the
repository's ``schemas/``) and removes schema files of contracts that no longer exist. With
``--check`` it writes nothing and exits 1 when the directory is stale (what CI runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from iwd_stream.contracts.models import ALL_CONTRACTS, SCHEMA_VERSION

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "schemas"
SUFFIX = ".schema.json"


def render_schemas() -> dict[str, str]:
    """Return ``{file name: JSON text}`` for every contract, deterministic byte for byte."""
    out = {}
    for name, model in sorted(ALL_CONTRACTS.items()):
        schema = model.model_json_schema(mode="validation")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://iwd-stream.dev/schemas/{name}.v{SCHEMA_VERSION}.json",
            **schema,
        }
        out[f"{name}{SUFFIX}"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def stale_files(directory: Path = DEFAULT_DIR) -> list[str]:
    """Return the schema files that are missing, different, or no longer belong in ``directory``."""
    wanted = render_schemas()
    problems = []
    for name, text in wanted.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            problems.append(name)
    if directory.is_dir():
        problems += sorted(p.name for p in directory.glob(f"*{SUFFIX}") if p.name not in wanted)
    return problems


def write_schemas(directory: Path = DEFAULT_DIR) -> list[str]:
    """Write every schema into ``directory`` and drop orphans; return the files changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = stale_files(directory)
    wanted = render_schemas()
    for name in changed:
        path = directory / name
        if name in wanted:
            path.write_text(wanted[name], encoding="utf-8")
        else:
            path.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iwd_stream.contracts.export", description=__doc__
    )
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--check", action="store_true", help="exit 1 when the schemas are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.directory)
        for name in stale:
            print(f"stale: {args.directory / name}", file=sys.stderr)
        if stale:
            print("run: python -m iwd_stream.contracts.export", file=sys.stderr)
        return 1 if stale else 0
    for name in write_schemas(args.directory):
        print(f"wrote {args.directory / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
