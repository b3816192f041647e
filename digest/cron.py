"""Standard 5-field cron expressions as APScheduler 3.x triggers, and pure next-run maths.

Owns: parsing ``minute hour day-of-month month day-of-week`` with the semantics every crontab
user knows (Vixie cron / cronie), and turning it into a trigger the scheduler can persist.
May import only the standard library and APScheduler (nothing from the project); no I/O.

Why not ``CronTrigger.from_crontab``: in APScheduler 3.x day-of-week ``0`` is Monday, so
``from_crontab("0 8 * * 1")`` fires on Tuesday, and it ANDs day-of-month with day-of-week.
Here every field is parsed into explicit values (weekdays passed on by *name*), and the
standard rules hold:

* weekday ``0`` and ``7`` are Sunday, ``1`` is Monday; names ``sun``..``sat``, ``jan``..``dec``
  (any case), usable in ranges (``mon-fri``); lists, ranges and steps (``*/15``, ``1-5/2``,
  ``10/20`` meaning ``10-59/20``); the macros ``@hourly``, ``@daily``/``@midnight``,
  ``@weekly``, ``@monthly``, ``@yearly``/``@annually``.
* when both day-of-month and day-of-week are restricted (neither starts with ``*``) a day
  matching EITHER fires (``0 8 1 * mon``: the 1st of each month and every Monday). This is
  built as an ``OrTrigger`` of two cron triggers, which pickles like any other trigger.
* DST: a time skipped by spring-forward fires at the same instant shifted forward (``30 2``
  in Europe/Berlin on 2026-03-29 fires at 03:30 CEST); a fixed-hour time repeated by
  fall-back fires once, on its first occurrence (as cron does), while a wildcard-hour
  schedule (``30 * * * *``) keeps firing every real hour.
"""

from __future__ import annotations

import copyreg
import re
from calendar import monthrange
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

__all__ = ["CronSpec", "WallClockCronTrigger", "cron_trigger", "next_runs", "parse_cron", "zone"]

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# cron numbering: index 0 = Sunday; APScheduler wants these names, never numbers
WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the number of the first name (jan = 1, sun = 0)


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES, 1),
    _Field("day-of-week", 0, 7, WEEKDAY_NAMES, 0),
)

_STEP = re.compile(r"^(?P<base>[^/]+)(?:/(?P<step>[^/]*))?$")


@dataclass(frozen=True)
class CronSpec:
    """A parsed expression: the set of values each field allows (weekdays 0 = Sunday .. 6,
    7 already folded into 0) and whether the day fields were restricted (did not start with
    ``*``), which decides between AND and the standard OR of the two day fields."""

    expr: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool
    hour_wildcard: bool


def _value(token: str, field: _Field, text: str) -> int:
    word = token.lower()
    if field.names and word in field.names:
        return field.names.index(word) + field.name_base
    if not token.isdigit():
        allowed = f"{field.low}-{field.high}"
        if field.names:
            allowed += f" or {field.names[0]}..{field.names[-1]}"
        raise ValueError(f"{field.name} field {text!r}: {token!r} is not a number or name "
                         f"(allowed: {allowed})")
    number = int(token)
    if not field.low <= number <= field.high:
        raise ValueError(f"{field.name} field {text!r}: {number} is out of range "
                         f"{field.low}-{field.high}")
    return number


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ValueError(f"{field.name} field {text!r}: empty item in the list")
        match = _STEP.match(part)
        if match is None:
            raise ValueError(f"{field.name} field {text!r}: cannot read {part!r}")
        base, step_text = match["base"], match["step"]
        step = 1
        if step_text is not None:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{field.name} field {text!r}: step {step_text!r} must be a "
                                 "whole number above 0")
            step = int(step_text)
        # '*' spans the field; weekday 7 is only an alias of 0, so '*' stops at 6
        high = 6 if field.name == "day-of-week" else field.high
        if base == "*":
            first, last = field.low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _value(a, field, text), _value(b, field, text)
            if first > last:
                top, bottom = str(high), str(field.low)
                if field.names and not a.isdigit():
                    top, bottom = field.names[high - field.name_base], field.names[0]
                raise ValueError(f"{field.name} field {text!r}: range {base!r} runs backwards "
                                 f"(write it as two ranges: {a}-{top},{bottom}-{b})")
        else:
            first = _value(base, field, text)
            # '10/20' is the common shorthand for '10-<max>/20'
            last = high if step_text is not None else first
        values.update(range(first, last + 1, step))
    if field.name == "day-of-week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


@lru_cache(maxsize=4096)
def parse_cron(expr: str) -> CronSpec:
    """Parse a 5-field cron expression (or an ``@daily``-style macro); raise ``ValueError``
    naming the bad field when it is not one."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ValueError(f"unknown macro {text!r} (known: {', '.join(sorted(MACROS))})")
        text = MACROS[text.lower()]
    parts = text.split(" ") if text else []
    if len(parts) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(parts)}")
    minutes, hours, days, months, weekdays = (
        _parse_field(part, field) for part, field in zip(parts, _FIELDS))
    spec = CronSpec(expr=expr, minutes=minutes, hours=hours, days=days, months=months,
                    weekdays=weekdays, days_restricted=not parts[2].startswith("*"),
                    weekdays_restricted=not parts[4].startswith("*"),
                    hour_wildcard=parts[1].startswith("*"))
    # A day no chosen month has would make the trigger search to year 9999 for nothing (with
    # the weekday OR-ed in, the weekdays alone still fire, see cron_trigger).
    if not _days_possible(spec) and not (spec.days_restricted and spec.weekdays_restricted):
        names = ",".join(MONTH_NAMES[m - 1] for m in sorted(months))
        raise ValueError(f"day-of-month field {parts[2]!r}: day {min(days)} never occurs in "
                         f"{names}, so the schedule would never fire")
    return spec


def _days_possible(spec: CronSpec) -> bool:
    longest = max(monthrange(2000, m)[1] for m in spec.months)  # 2000 is leap: Feb 29 counts
    return min(spec.days) <= longest


def zone(timezone: str) -> ZoneInfo:
    """The IANA zone, or ``ValueError`` with a message a user can act on."""
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {timezone!r} (use an IANA name such as "
                         "'Europe/Berlin' or 'America/New_York')") from None


def _ambiguous_repeat(moment: datetime) -> bool:
    """True for the second occurrence of a wall-clock time repeated by a DST fall-back."""
    return moment.fold == 1 and moment.replace(fold=0).utcoffset() != moment.utcoffset()


class WallClockCronTrigger(CronTrigger):  # type: ignore[misc]  # APScheduler 3 is untyped
    """A ``CronTrigger`` that fires fixed wall-clock times once on the fall-back night (as
    cron does) and reports spring-forward fires as real local times (03:30 CEST, not the
    non-existent 02:30+01:00 APScheduler computes). Lives here, importable, so jobs holding
    it pickle into the SQLite job store.

    It pickles as its value (``_value``: the fields' cron text, zone, dates, jitter) handed to
    ``_wall_clock``, a cached constructor: a job store's 10,000 jobs on one schedule unpickle
    to one lookup each and share one trigger, instead of rebuilding 8 fields and their
    expressions each (most of the CPU of loading a due job). Pickles of the older form (the
    fields' objects, through ``__setstate__``) still load."""

    __slots__ = ("_value_kept", "skip_repeats")
    _value_kept: tuple[Any, ...] | None  # ``_value()``'s answer, worked out on first use

    def __init__(self, *args: Any, skip_repeats: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skip_repeats = skip_repeats
        self._value_kept = None

    def _value(self) -> tuple[Any, ...]:
        """What the trigger is, hashable: the fields given (name and cron text), the zone,
        start and end dates, jitter and ``skip_repeats``. Equal values fire alike."""
        value = self._value_kept
        if value is None:
            given = tuple((f.name, str(f)) for f in self.fields if not f.is_default)
            value = self._value_kept = (given, self.timezone, self.start_date, self.end_date,
                                        self.jitter, self.skip_repeats)
        return value

    def __reduce__(self) -> tuple[Any, ...]:
        value = self._value()
        if _rebuilds(self, value):
            return (_wall_clock, value)
        # fields their cron text would not give back (never made so here): the older form,
        # the fields' objects (what pickle does by default for a class with slots)
        return (_NEWOBJ, (type(self),), self.__getstate__())

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        """The next fire after ``previous_fire_time``. From a fire that is not in the future
        APScheduler searches from that fire plus a microsecond, whatever ``now`` is, so the
        answer is a function of the trigger's value and that fire alone: a daemon's burst of
        10,000 jobs on one schedule works it out once (kept in ``_NEXT_FIRES``) instead of
        running the cron search 10,000 times (~100 us each)."""
        if previous_fire_time is None or self.jitter:
            return self._next_fire(previous_fire_time, now)
        # instants in UTC: two local times of one zone compare by wall time, so the two
        # 01:30s of a fall-back night would be one key
        fired = previous_fire_time.astimezone(UTC)
        if now.astimezone(UTC) < fired:
            return self._next_fire(previous_fire_time, now)
        value = self._value()
        # its value says which fields it has only when it builds them again (always, but for
        # a trigger made by hand with odd defaults): else its fields' text says it
        key = (value if _rebuilds(self, value) else (value, tuple(map(str, self.fields))),
               fired)
        found = _NEXT_FIRES.get(key, _NONE_YET)
        if found is _NONE_YET:
            if len(_NEXT_FIRES) >= 4096:
                _NEXT_FIRES.clear()
            found = _NEXT_FIRES[key] = self._next_fire(previous_fire_time, now)
        return found  # type: ignore[return-value]

    def _next_fire(self, previous_fire_time: datetime | None,
                   now: datetime) -> datetime | None:
        while True:
            moment: datetime | None = super().get_next_fire_time(previous_fire_time, now)
            if moment is None:
                return None
            # through UTC and back: a non-existent local time becomes the real one
            moment = moment.astimezone(UTC).astimezone(self.timezone)
            if not (self.skip_repeats and _ambiguous_repeat(moment)):
                return moment
            previous_fire_time = now = moment

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        state["skip_repeats"] = self.skip_repeats
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.skip_repeats = state.get("skip_repeats", True)
        self._value_kept = None


@lru_cache(maxsize=4096)  # a job store's triggers share a handful of values
def _wall_clock(given: tuple[tuple[str, str], ...], timezone: tzinfo,
                start_date: datetime | None, end_date: datetime | None, jitter: int | None,
                skip_repeats: bool) -> WallClockCronTrigger:
    """The trigger of a value (``WallClockCronTrigger._value``), built once and shared, as
    ``cron_trigger``'s are: triggers are never mutated."""
    return WallClockCronTrigger(**dict(given), timezone=timezone, start_date=start_date,
                                end_date=end_date, jitter=jitter, skip_repeats=skip_repeats)


_REBUILDS: dict[tuple[Any, ...], bool] = {}  # a value -> whether it rebuilds its trigger


def _rebuilds(trigger: WallClockCronTrigger, value: tuple[Any, ...]) -> bool:
    """Whether ``_wall_clock(*value)`` is ``trigger`` again, field by field (asked once per
    value): pickling a trigger as its value must never change what it fires."""
    known = _REBUILDS.get(value)
    if known is None:
        try:
            twin = _wall_clock(*value)
        except (TypeError, ValueError):
            known = False
        else:
            known = type(twin) is type(trigger) and twin.__getstate__() == trigger.__getstate__() \
                and [f.is_default for f in twin.fields] == [f.is_default for f in trigger.fields]
        if len(_REBUILDS) >= 4096:
            _REBUILDS.clear()
        _REBUILDS[value] = known
    return known


_NEWOBJ = getattr(copyreg, "__newobj__")  # not in typeshed

# (a trigger's value, a past fire in UTC) -> the next fire (WallClockCronTrigger's)
_NEXT_FIRES: dict[tuple[Any, datetime], datetime | None] = {}
_NONE_YET = object()


def _join(values: frozenset[int], names: Sequence[str] = ()) -> str:
    return ",".join(names[v] if names else str(v) for v in sorted(values))


@lru_cache(maxsize=4096)  # thousands of subscribers share a handful of schedules
def cron_trigger(expr: str, timezone: str) -> BaseTrigger:
    """The APScheduler trigger for a standard cron expression in an IANA timezone.

    Returns a ``WallClockCronTrigger`` (a ``CronTrigger``), or an ``OrTrigger`` of two when
    both day fields are restricted. Raises ``ValueError`` naming the bad field or zone. The
    result is cached and shared: triggers are never mutated (APScheduler pickles each job's).
    """
    spec = parse_cron(expr)
    tz = zone(timezone)
    common: dict[str, Any] = {
        "minute": _join(spec.minutes),
        "hour": "*" if spec.hours == frozenset(range(24)) else _join(spec.hours),
        "month": "*" if spec.months == frozenset(range(1, 13)) else _join(spec.months),
        "timezone": tz,
        "skip_repeats": not spec.hour_wildcard,
    }
    days = _join(spec.days)
    weekdays = _join(spec.weekdays, WEEKDAY_NAMES)
    if spec.days_restricted and spec.weekdays_restricted:
        if not _days_possible(spec):
            return WallClockCronTrigger(day_of_week=weekdays, **common)
        return OrTrigger([WallClockCronTrigger(day=days, **common),
                          WallClockCronTrigger(day_of_week=weekdays, **common)])
    return WallClockCronTrigger(
        day="*" if spec.days == frozenset(range(1, 32)) else days,
        day_of_week="*" if spec.weekdays == frozenset(range(7)) else weekdays, **common)


def next_runs(expr: str, timezone: str, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` fire times strictly after ``after`` (aware), in the zone's local time."""
    if after.tzinfo is None:
        raise ValueError("'after' must be timezone-aware")
    trigger = cron_trigger(expr, timezone)
    tz: tzinfo = zone(timezone)
    out: list[datetime] = []
    previous: datetime | None = None
    now = after + timedelta(microseconds=1)
    while len(out) < n:
        moment = trigger.get_next_fire_time(previous, now)
        if moment is None:
            break
        moment = moment.astimezone(UTC).astimezone(tz)
        out.append(moment)
        previous = now = moment
    return out


@lru_cache(maxsize=4096)  # a send asks it for every subscriber; they share few schedules
def fires_on(expr: str, timezone: str, day: date) -> bool:
    """Whether the schedule has a send on ``day`` (a local calendar date in ``timezone``)."""
    start = datetime.combine(day, time.min, tzinfo=zone(timezone))
    runs = next_runs(expr, timezone, start - timedelta(microseconds=1), 1)
    return bool(runs) and runs[0].date() == day
