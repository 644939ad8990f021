"""Read CSV / JSONL source files row by row, keeping each row's line number and original bytes."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from iwd_stream.connectors.mapping import Mapping
from iwd_stream.errors import ConfigError


@dataclass(frozen=True)
class SourceRow:
    """One row of a source: where it starts, its original bytes, and its values by column."""

    line: int
    raw: bytes
    values: dict[str, Any] | None  # None: the row is malformed (see ``problem``)
    problem: str | None = None


class _LineTap:
    """Hand lines to the csv reader and remember them, so a row's original bytes are known."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.taken: list[str] = []
        self.count = 0

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        self.count += 1
        return line


def read_rows(path: Path, mapping: Mapping) -> Iterator[SourceRow]:
    """Yield the rows of ``path``; raise ConfigError at once if its header misses a mapped column."""
    if mapping.format == "jsonl":
        yield from _read_jsonl(path, mapping)
    else:
        yield from _read_csv(path, mapping)


def _open(path: Path, mapping: Mapping) -> Any:
    try:
        return path.open(encoding=mapping.encoding, newline="")
    except OSError as exc:
        raise ConfigError(f"cannot read source file {path}: {exc.strerror or exc}") from None


def _read_csv(path: Path, mapping: Mapping) -> Iterator[SourceRow]:
    with _open(path, mapping) as fh:
        tap = _LineTap(iter(fh))
        reader = csv.reader(tap, delimiter=mapping.csv_delimiter)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ConfigError(f"source file {path} is empty (no header row)") from None
        mapping.check_columns(header, str(path))
        tap.taken.clear()
        while True:
            start = tap.count + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raw = "".join(tap.taken).encode(mapping.encoding)
                tap.taken.clear()
                yield SourceRow(start, raw, None, f"not valid CSV: {exc}")
                continue
            raw = "".join(tap.taken).encode(mapping.encoding)
            tap.taken.clear()
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(header):
                yield SourceRow(
                    start, raw, None, f"row has {len(row)} fields; the header has {len(header)}"
                )
                continue
            yield SourceRow(start, raw, dict(zip(header, row, strict=True)))


def _read_jsonl(path: Path, mapping: Mapping) -> Iterator[SourceRow]:
    # JSON lines have no header: a mapped key absent from an object is a missing value.
    with _open(path, mapping) as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            raw = line.encode(mapping.encoding)
            yield parse_json_row(number, raw)


def parse_json_row(number: int, raw: bytes) -> SourceRow:
    """Parse one JSON object (a JSONL line or a Kafka message value) into a SourceRow."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return SourceRow(number, raw, None, f"not JSON: {exc}")
    if not isinstance(value, dict):
        return SourceRow(number, raw, None, f"expected a JSON object, got {type(value).__name__}")
    return SourceRow(number, raw, value)
