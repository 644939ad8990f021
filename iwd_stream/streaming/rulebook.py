"""Load the tenants' rules a worker runs with."""

from __future__ import annotations

from pathlib import Path

from iwd_stream.domain.rules import RuleBook, load_rules
from iwd_stream.errors import ConfigError


def load_rulebook(path: Path | None) -> RuleBook:
    """Load a rules folder (one YAML per tenant), one rules file, or the bundled examples."""
    if path is None:
        return RuleBook.bundled()
    if path.is_dir():
        book = RuleBook.load_dir(path)
        if not book.tenants():
            raise ConfigError(f"no *.yaml rules files in {path}")
        return book
    if path.is_file():
        rules = load_rules(path)
        return RuleBook({rules.tenant or path.stem: rules})
    raise ConfigError(f"rules path {path} does not exist")
