"""Errors raised by the domain package: all under :class:`iwd_stream.errors.IwdError`.

Transitions never raise: an illegal lifecycle event is a rejected history record. These errors
are for configuration (rules files) and for inputs no rule set can judge (unknown tenant).
"""

from __future__ import annotations

from iwd_stream.errors import ConfigError, IwdError


class RulesError(ConfigError):
    """A rules document is invalid; names the file, the path inside the document and the problem.

    >>> str(RulesError("rules/acme.yaml", "classification.global[0].when.priority", "unknown operator 'like'"))
    "rules/acme.yaml: classification.global[0].when.priority: unknown operator 'like'"
    """

    def __init__(self, file: str, path: str, problem: str) -> None:
        self.file = file
        self.path = path or "(document)"
        self.problem = problem
        super().__init__(f"{file}: {self.path}: {problem}")


class UnknownTenantError(IwdError):
    """No rule set is loaded for a tenant: its events cannot be classified (dead-letter them)."""

    def __init__(self, tenant: str, known: list[str]) -> None:
        self.tenant = tenant
        super().__init__(
            f"no rules loaded for tenant {tenant!r} (known: {', '.join(known) or 'none'})"
        )


class UnknownCalendarError(IwdError):
    """A queue entry names a calendar its tenant's rules do not define."""
