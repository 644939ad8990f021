"""Small time helpers: duration strings and exact integer instants (no clock reads here)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_duration(text: str | int | float) -> timedelta:
    """Parse ``"1d2h30m"``-style durations (days, hours, minutes, seconds); numbers are seconds.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration(90)
    datetime.timedelta(seconds=90)
    """
    if isinstance(text, bool):
        raise ValueError("a duration is a string like '15m' or a number of seconds, not a bool")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration {text} is negative")
        return timedelta(seconds=text)
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration (use e.g. '15m', '4h', '2d', '1h30m')")
    d, h, m, s = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)


def to_us(t: datetime) -> int:
    """Return an aware datetime as integer microseconds since the epoch (exact, orderable).

    >>> to_us(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
    1000000
    """
    delta = t - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    """Return integer epoch microseconds as a UTC datetime (inverse of :func:`to_us`)."""
    return EPOCH + timedelta(microseconds=us)


def utc(t: datetime) -> datetime:
    """Return ``t`` in UTC; arithmetic between two ZoneInfo datetimes is wall-clock, not elapsed."""
    return t.astimezone(UTC)
