"""Business calendars: working hours, weekends, holidays and DST (table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from iwd_stream.domain.business_calendar import BusinessCalendar, add_time, elapsed

NY = ZoneInfo("America/New_York")
OFFICE = BusinessCalendar.build(
    "office", "America/New_York", {"mon-fri": "09:00-17:00"}, holidays=["2024-07-04"]
)
ALWAYS_NY = BusinessCalendar.build("always", "America/New_York", {"all": "00:00-24:00"})
SPLIT = BusinessCalendar.build("split", "UTC", {"mon-fri": ["13:00-17:00", "08:00-12:00"]})


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "cal", "start", "duration", "expected"),
    [
        ("inside one day", OFFICE, ny(2024, 3, 4, 10), timedelta(hours=2), ny(2024, 3, 4, 12)),
        (
            "ends exactly at close",
            OFFICE,
            ny(2024, 3, 4, 9),
            timedelta(hours=8),
            ny(2024, 3, 4, 17),
        ),
        (
            "rolls to next morning",
            OFFICE,
            ny(2024, 3, 4, 16),
            timedelta(hours=2),
            ny(2024, 3, 5, 10),
        ),
        (
            "starts before opening",
            OFFICE,
            ny(2024, 3, 4, 6),
            timedelta(hours=1),
            ny(2024, 3, 4, 10),
        ),
        (
            "friday over the weekend",
            OFFICE,
            ny(2024, 3, 1, 16),
            timedelta(hours=2),
            ny(2024, 3, 4, 10),
        ),
        ("starts on saturday", OFFICE, ny(2024, 3, 2, 12), timedelta(hours=1), ny(2024, 3, 4, 10)),
        ("skips a holiday", OFFICE, ny(2024, 7, 3, 16), timedelta(hours=2), ny(2024, 7, 5, 10)),
        (
            "over the DST weekend",
            OFFICE,
            ny(2024, 3, 8, 16),
            timedelta(hours=2),
            ny(2024, 3, 11, 10),
        ),
        (
            "spring-forward day is 23h",
            ALWAYS_NY,
            ny(2024, 3, 10, 0),
            timedelta(hours=24),
            ny(2024, 3, 11, 1),
        ),
        (
            "fall-back day is 25h",
            ALWAYS_NY,
            ny(2024, 11, 3, 0),
            timedelta(hours=24),
            ny(2024, 11, 3, 23),
        ),
        (
            "lunch break",
            SPLIT,
            datetime(2024, 3, 4, 11, tzinfo=UTC),
            timedelta(hours=2),
            datetime(2024, 3, 4, 14, tzinfo=UTC),
        ),
        ("zero duration stays put", OFFICE, ny(2024, 3, 2, 12), timedelta(0), ny(2024, 3, 2, 12)),
    ],
)
def test_add(
    name: str, cal: BusinessCalendar, start: datetime, duration: timedelta, expected: datetime
) -> None:
    assert cal.add(start, duration) == expected


@pytest.mark.parametrize(
    ("a", "b", "hours"),
    [
        (ny(2024, 3, 1, 16), ny(2024, 3, 4, 10), 2),
        (ny(2024, 3, 2, 0), ny(2024, 3, 3, 23), 0),
        (ny(2024, 7, 3, 9), ny(2024, 7, 5, 17), 16),
        (ny(2024, 3, 4, 12), ny(2024, 3, 4, 11), 0),
    ],
)
def test_between(a: datetime, b: datetime, hours: int) -> None:
    assert OFFICE.between(a, b) == timedelta(hours=hours)


def test_dst_elapsed_is_real_time_not_wall_time() -> None:
    # Wall clock says 24 h from Sat 00:00 to Sun 00:00 across spring-forward; really 23 h.
    assert ALWAYS_NY.between(ny(2024, 3, 10, 0), ny(2024, 3, 11, 0)) == timedelta(hours=23)
    assert ALWAYS_NY.between(ny(2024, 11, 3, 0), ny(2024, 11, 4, 0)) == timedelta(hours=25)


@pytest.mark.parametrize(
    ("t", "open_"),
    [
        (ny(2024, 3, 4, 9), True),
        (ny(2024, 3, 4, 17), False),
        (ny(2024, 3, 2, 10), False),
        (ny(2024, 7, 4, 10), False),
        (ny(2024, 3, 4, 8, 59), False),
    ],
)
def test_is_open(t: datetime, open_: bool) -> None:
    assert OFFICE.is_open(t) is open_


def test_add_and_between_are_inverse() -> None:
    start = ny(2024, 3, 7, 15, 30)
    for minutes in (0, 1, 90, 480, 481, 5000):
        end = OFFICE.add(start, timedelta(minutes=minutes))
        assert OFFICE.between(start, end) == timedelta(minutes=minutes)


def test_no_calendar_means_elapsed_time() -> None:
    t = ny(2024, 3, 10, 0)
    assert add_time(None, t, timedelta(hours=24)) == t.astimezone(UTC) + timedelta(hours=24)
    assert elapsed(None, t, t - timedelta(hours=1)) == timedelta(0)


@pytest.mark.parametrize(
    ("hours", "problem"),
    [
        ({"mon-fri": "9-17"}, "not a working-hours interval"),
        ({"mon-fri": "17:00-09:00"}, "ends before it starts"),
        ({"fri-mon": "09:00-17:00"}, "runs backwards"),
        ({"funday": "09:00-17:00"}, "is not a day"),
        ({"mon": ["09:00-12:00", "11:00-13:00"]}, "overlap"),
        ({}, "at least one day"),
    ],
)
def test_invalid_calendars(hours: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        BusinessCalendar.build("x", "UTC", hours)


def test_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        BusinessCalendar.build("x", "Mars/Olympus", {"all": "00:00-24:00"})
