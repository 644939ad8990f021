"""Business calendars: a time zone, weekly working hours and holidays; business-time arithmetic.

Every instant in and out is an aware datetime; every computation is done on UTC instants built
from local wall times, so a working day that contains a DST change is exactly as long as the
clock on the wall says (``00:00-24:00`` is 23 h on the spring-forward day, 25 h in autumn).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from iwd_stream.domain.timeutil import utc

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_INTERVAL = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
# Ten years of days without a working minute means the calendar can never be satisfied.
_MAX_DAYS = 3660

Interval = tuple[datetime, datetime]


def _parse_days(key: str) -> list[int]:
    key = key.strip().lower()
    if key in ("all", "daily", "mon-sun"):
        return list(range(7))
    if "-" in key:
        first, last = (k.strip() for k in key.split("-", 1))
        if first not in DAYS or last not in DAYS:
            raise ValueError(f"{key!r} is not a day range (use e.g. 'mon-fri')")
        a, b = DAYS.index(first), DAYS.index(last)
        if a > b:
            raise ValueError(f"day range {key!r} runs backwards")
        return list(range(a, b + 1))
    if key not in DAYS:
        raise ValueError(f"{key!r} is not a day (use mon..sun, a range like 'mon-fri', or 'all')")
    return [DAYS.index(key)]


def _parse_interval(text: str) -> tuple[time, time | None]:
    match = _INTERVAL.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a working-hours interval (use 'HH:MM-HH:MM')")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{text!r} has an invalid time of day")
    start = time(h1, m1)
    end = None if h2 == 24 else time(h2, m2)  # None stands for 24:00 (the next midnight)
    if end is not None and end <= start:
        raise ValueError(f"{text!r} ends before it starts (split overnight shifts at 24:00)")
    return start, end


@dataclass(frozen=True)
class BusinessCalendar:
    """Working time of one tenant: ``hours[weekday]`` are local intervals (end None = 24:00).

    >>> cal = BusinessCalendar.build("office", "Europe/Lisbon", {"mon-fri": ["09:00-17:00"]})
    >>> fri_4pm = datetime(2024, 3, 1, 16, 0, tzinfo=ZoneInfo("Europe/Lisbon"))
    >>> cal.add(fri_4pm, timedelta(hours=2)).isoformat()   # 1 h on Friday, 1 h on Monday
    '2024-03-04T10:00:00+00:00'
    """

    name: str
    tz: ZoneInfo
    hours: tuple[tuple[tuple[time, time | None], ...], ...]
    holidays: frozenset[date] = frozenset()
    _cache: dict[date, tuple[Interval, ...]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    @classmethod
    def build(
        cls,
        name: str,
        timezone: str,
        hours: Mapping[str, str | Sequence[str]],
        holidays: Sequence[date | str] = (),
    ) -> BusinessCalendar:
        """Build a calendar from its rules-file form; raise ValueError naming what is wrong."""
        try:
            tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r}") from None
        week: list[list[tuple[time, time | None]]] = [[] for _ in range(7)]
        for key, spec in hours.items():
            intervals = [spec] if isinstance(spec, str) else list(spec)
            for day in _parse_days(key):
                week[day].extend(_parse_interval(i) for i in intervals)
        for day, day_hours in enumerate(week):
            day_hours.sort(key=lambda iv: iv[0])
            for (_, end1), (start2, _) in zip(day_hours, day_hours[1:], strict=False):
                if end1 is None or end1 > start2:
                    raise ValueError(f"working hours on {DAYS[day]} overlap")
        if not any(week):
            raise ValueError("a calendar needs working hours on at least one day")
        days = frozenset(h if isinstance(h, date) else date.fromisoformat(h) for h in holidays)
        return cls(name, tz, tuple(tuple(d) for d in week), days)

    @classmethod
    def always(cls, name: str = "24x7", timezone: str = "UTC") -> BusinessCalendar:
        """Return a calendar that is always open (business time = elapsed time)."""
        return cls.build(name, timezone, {"all": ["00:00-24:00"]})

    def intervals(self, day: date) -> tuple[Interval, ...]:
        """Return the UTC working intervals of a local calendar day (empty on holidays)."""
        cached = self._cache.get(day)
        if cached is not None:
            return cached
        out: list[Interval] = []
        if day not in self.holidays:
            for start, end in self.hours[day.weekday()]:
                # Local wall times become instants here; a time inside a DST gap resolves to
                # the pre-transition offset (fold=0), which zoneinfo defines for us.
                s = utc(datetime.combine(day, start, tzinfo=self.tz))
                if end is None:
                    e = utc(datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz))
                else:
                    e = utc(datetime.combine(day, end, tzinfo=self.tz))
                if e > s:
                    out.append((s, e))
        result = tuple(out)
        if len(self._cache) > 4096:  # bounded: a long-running worker sees new days forever
            self._cache.clear()
        self._cache[day] = result
        return result

    def _local_day(self, t: datetime) -> date:
        return t.astimezone(self.tz).date()

    def is_open(self, t: datetime) -> bool:
        """Return whether ``t`` falls inside working hours.

        >>> cal = BusinessCalendar.build("office", "UTC", {"mon-fri": "09:00-17:00"})
        >>> cal.is_open(datetime(2024, 3, 2, 10, tzinfo=UTC))  # a Saturday
        False
        """
        t = utc(t)
        return any(s <= t < e for s, e in self.intervals(self._local_day(t)))

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """Return the instant ``duration`` of working time after ``start`` (in UTC).

        A zero duration returns ``start`` itself; a result that lands exactly on the end of a
        working interval stays there (due 18:00 today, not 08:00 tomorrow).
        """
        cursor = utc(start)
        remaining = duration
        if remaining <= timedelta(0):
            return cursor
        day = self._local_day(cursor) - timedelta(days=1)  # an interval may start the day before
        for _ in range(_MAX_DAYS):
            for s, e in self.intervals(day):
                if e <= cursor:
                    continue
                begin = max(s, cursor)
                available = e - begin
                if remaining <= available:
                    return begin + remaining
                remaining -= available
            day += timedelta(days=1)
        raise ValueError(f"calendar {self.name!r}: no working time within {_MAX_DAYS} days")

    def between(self, a: datetime, b: datetime) -> timedelta:
        """Return the working time elapsed from ``a`` to ``b`` (zero when ``b <= a``).

        >>> cal = BusinessCalendar.build("office", "UTC", {"mon-fri": "09:00-17:00"})
        >>> cal.between(datetime(2024, 3, 1, 16, tzinfo=UTC), datetime(2024, 3, 4, 10, tzinfo=UTC))
        datetime.timedelta(seconds=7200)
        """
        a, b = utc(a), utc(b)
        total = timedelta(0)
        if b <= a:
            return total
        day = self._local_day(a) - timedelta(days=1)
        last = self._local_day(b)
        while day <= last:
            for s, e in self.intervals(day):
                lo, hi = max(s, a), min(e, b)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total


def add_time(calendar: BusinessCalendar | None, start: datetime, duration: timedelta) -> datetime:
    """Add working time when a calendar is given, else elapsed time; the result is UTC."""
    if calendar is None:
        return utc(start) + duration
    return calendar.add(start, duration)


def elapsed(calendar: BusinessCalendar | None, a: datetime, b: datetime) -> timedelta:
    """Return working time (or elapsed time without a calendar) from ``a`` to ``b``, never < 0."""
    if calendar is None:
        return max(utc(b) - utc(a), timedelta(0))
    return calendar.between(a, b)


__all__ = ["BusinessCalendar", "DAYS", "UTC", "add_time", "elapsed"]
