"""Next-run maths for standard cron expressions: pure functions, no scheduler running."""

from __future__ import annotations

import copyreg
import io
import pickle
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from digest.cron import WallClockCronTrigger, cron_trigger, next_runs, parse_cron


def iso(runs: list[datetime]) -> list[str]:
    return [r.isoformat() for r in runs]


SAT = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # a Saturday


@pytest.mark.parametrize(("weekday", "first"), [
    ("1", "2026-03-30"),      # cron 1 = Monday (APScheduler's from_crontab would say Tuesday)
    ("mon", "2026-03-30"),
    ("MON", "2026-03-30"),
    ("0", "2026-03-29"),      # 0 = Sunday
    ("7", "2026-03-29"),      # 7 = Sunday too
    ("sun", "2026-03-29"),
    ("6", "2026-04-04"),      # 6 = Saturday; 08:00 today has passed at noon
    ("5", "2026-04-03"),      # Friday
])
def test_weekday_numbers_and_names_follow_standard_cron(weekday: str, first: str) -> None:
    (run,) = next_runs(f"0 8 * * {weekday}", "UTC", SAT, 1)
    assert run.date().isoformat() == first
    assert run.hour == 8


def test_from_crontab_really_is_off_by_one_which_is_why_we_translate() -> None:
    # Guards the premise: if APScheduler ever fixes this, our translation still holds.
    naive = CronTrigger.from_crontab("0 8 * * 1", timezone="UTC")
    assert naive.get_next_fire_time(None, SAT).strftime("%a") == "Tue"
    assert next_runs("0 8 * * 1", "UTC", SAT, 1)[0].strftime("%a") == "Mon"


def test_weekday_ranges_lists_and_steps() -> None:
    days = [r.strftime("%a") for r in next_runs("0 8 * * mon-fri", "UTC", SAT, 6)]
    assert days == ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]
    days = [r.strftime("%a") for r in next_runs("0 8 * * 5-7", "UTC", SAT, 4)]
    assert days == ["Sun", "Fri", "Sat", "Sun"]
    days = [r.strftime("%a") for r in next_runs("0 8 * * 1,3,5", "UTC", SAT, 3)]
    assert days == ["Mon", "Wed", "Fri"]
    days = [r.strftime("%a") for r in next_runs("0 8 * * 0-6/2", "UTC", SAT, 4)]
    assert days == ["Sun", "Tue", "Thu", "Sat"]


def test_minute_hour_steps_and_month_names() -> None:
    runs = next_runs("*/20 9-10 * * *", "UTC", SAT, 7)
    assert [r.strftime("%d %H:%M") for r in runs] == [
        "29 09:00", "29 09:20", "29 09:40", "29 10:00", "29 10:20", "29 10:40", "30 09:00"]
    assert iso(next_runs("15/20 12 * * *", "UTC", SAT, 3)) == [
        "2026-03-28T12:15:00+00:00", "2026-03-28T12:35:00+00:00", "2026-03-28T12:55:00+00:00"]
    assert iso(next_runs("0 6 1 jan,Jul *", "UTC", SAT, 2)) == [
        "2026-07-01T06:00:00+00:00", "2027-01-01T06:00:00+00:00"]


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # Standard cron: the 13th of each month OR every Friday (not "Friday the 13th").
    runs = next_runs("0 8 13 * fri", "UTC", SAT, 4)
    assert [r.strftime("%a %d") for r in runs] == ["Fri 03", "Fri 10", "Mon 13", "Fri 17"]
    assert isinstance(cron_trigger("0 8 13 * fri", "UTC"), OrTrigger)
    # A '*'-led field is not a restriction, so these AND as cron does.
    runs = next_runs("0 8 */10 * mon", "UTC", SAT, 2)
    assert [r.strftime("%a %d %b") for r in runs] == ["Mon 11 May", "Mon 01 Jun"]
    # OR with an impossible day still fires on the weekdays.
    assert next_runs("0 8 30 feb mon", "UTC", SAT, 1)[0].date().isoformat() == "2027-02-01"


@pytest.mark.parametrize(("macro", "first"), [
    ("@daily", "2026-03-29T00:00:00+00:00"),
    ("@midnight", "2026-03-29T00:00:00+00:00"),
    ("@hourly", "2026-03-28T13:00:00+00:00"),
    ("@weekly", "2026-03-29T00:00:00+00:00"),
    ("@monthly", "2026-04-01T00:00:00+00:00"),
    ("@YEARLY", "2027-01-01T00:00:00+00:00"),
])
def test_macros(macro: str, first: str) -> None:
    assert iso(next_runs(macro, "UTC", SAT, 1)) == [first]


def test_timezones_on_both_sides_of_utc() -> None:
    after = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    (tokyo,) = next_runs("0 7 * * *", "Asia/Tokyo", after, 1)
    # 00:00 UTC is already 09:00 in Tokyo: the next 07:00 is tomorrow, 22:00 UTC today.
    assert tokyo.isoformat() == "2026-06-02T07:00:00+09:00"
    assert tokyo.astimezone(UTC).isoformat() == "2026-06-01T22:00:00+00:00"
    (la,) = next_runs("0 7 * * *", "America/Los_Angeles", after, 1)
    assert la.isoformat() == "2026-06-01T07:00:00-07:00"
    assert la.astimezone(UTC).isoformat() == "2026-06-01T14:00:00+00:00"
    # Monday in Auckland is still Sunday in UTC.
    (nz,) = next_runs("30 6 * * mon", "Pacific/Auckland", after, 1)
    assert nz.isoformat() == "2026-06-08T06:30:00+12:00"
    assert nz.astimezone(UTC).strftime("%a %H:%M") == "Sun 18:30"


def test_dst_spring_forward_skipped_time_lands_an_hour_later() -> None:
    runs = next_runs("30 2 * * *", "Europe/Berlin", SAT, 3)
    assert iso(runs) == ["2026-03-29T03:30:00+02:00",  # 02:30 does not exist that night
                         "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]


def test_dst_fall_back_fixed_time_fires_once() -> None:
    after = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    runs = next_runs("30 1 * * *", "America/New_York", after, 3)
    assert iso(runs) == ["2026-11-01T01:30:00-04:00",  # the first 01:30 only
                         "2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00"]


def test_dst_fall_back_hourly_schedule_keeps_every_real_hour() -> None:
    after = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT
    runs = next_runs("30 * * * *", "America/New_York", after, 4)
    assert [r.astimezone(UTC).strftime("%H:%M") for r in runs] == [
        "04:30", "05:30", "06:30", "07:30"]


def test_leap_day() -> None:
    runs = next_runs("0 7 29 2 *", "UTC", SAT, 2)
    assert iso(runs) == ["2028-02-29T07:00:00+00:00", "2032-02-29T07:00:00+00:00"]


def test_next_runs_is_strictly_after_and_in_local_time() -> None:
    at = datetime(2026, 3, 30, 6, 0, tzinfo=UTC)  # exactly 08:00 in Berlin
    (run,) = next_runs("0 8 * * *", "Europe/Berlin", at, 1)
    assert run.isoformat() == "2026-03-31T08:00:00+02:00"
    assert str(run.tzinfo) == "Europe/Berlin"
    with pytest.raises(ValueError, match="timezone-aware"):
        next_runs("0 8 * * *", "UTC", datetime(2026, 3, 30), 1)


@pytest.mark.parametrize(("expr", "message"), [
    ("0 8 * *", "expected 5 fields (minute hour day month weekday), got 4"),
    ("0 8 * * * *", "expected 5 fields (minute hour day month weekday), got 6"),
    ("", "expected 5 fields (minute hour day month weekday), got 0"),
    ("60 8 * * *", "minute field '60': 60 is out of range 0-59"),
    ("0 24 * * *", "hour field '24': 24 is out of range 0-23"),
    ("0 8 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
    ("0 8 * 13 *", "month field '13': 13 is out of range 1-12"),
    ("0 8 * * 8", "day-of-week field '8': 8 is out of range 0-7"),
    ("0 8 * * funday", "day-of-week field 'funday': 'funday' is not a number or name "
                       "(allowed: 0-7 or sun..sat)"),
    ("0 8 * * fri-mon", "day-of-week field 'fri-mon': range 'fri-mon' runs backwards "
                        "(write it as two ranges: fri-sat,sun-mon)"),
    ("*/0 8 * * *", "minute field '*/0': step '0' must be a whole number above 0"),
    ("0 8 1,,2 * *", "day-of-month field '1,,2': empty item in the list"),
    ("0 8 30 feb *", "day-of-month field '30': day 30 never occurs in feb, so the schedule "
                     "would never fire"),
    ("@reboot", "unknown macro '@reboot'"),
])
def test_bad_expressions_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        cron_trigger(expr, "UTC")
    assert str(caught.value).startswith(message)


def test_unknown_timezone() -> None:
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        cron_trigger("0 8 * * *", "Mars/Olympus")


def test_triggers_pickle_for_the_job_store() -> None:
    for expr in ("30 1 * * *", "0 8 13 * fri"):
        trigger = cron_trigger(expr, "America/New_York")
        copy = pickle.loads(pickle.dumps(trigger))
        start = datetime(2026, 10, 30, tzinfo=UTC)
        assert copy.get_next_fire_time(None, start) == trigger.get_next_fire_time(None, start)
        assert str(copy) == str(trigger)


def test_parse_cron_reports_restrictions() -> None:
    spec = parse_cron("0 8 * * 7")
    assert spec.weekdays == frozenset({0})
    assert spec.weekdays_restricted and not spec.days_restricted
    assert parse_cron("0 */2 * * *").hour_wildcard


def test_fires_on_tells_which_local_days_have_a_send() -> None:
    from datetime import date

    from digest.cron import fires_on

    # 2026-11-28 is a Saturday, 2026-11-30 a Monday.
    assert not fires_on("0 7 * * mon-fri", "Europe/London", date(2026, 11, 28))
    assert fires_on("0 7 * * mon-fri", "Europe/London", date(2026, 11, 30))
    assert fires_on("59 23 * * *", "Pacific/Auckland", date(2026, 11, 28))
    assert fires_on("0 7 29 2 *", "UTC", date(2028, 2, 29))
    assert not fires_on("0 7 29 2 *", "UTC", date(2027, 3, 1))
    # Standard cron ORs restricted day fields: the 1st, or any Friday.
    assert fires_on("0 7 1 * fri", "UTC", date(2026, 12, 1))  # a Tuesday, but the 1st
    assert fires_on("0 7 1 * fri", "UTC", date(2026, 12, 4))  # a Friday
    assert not fires_on("0 7 1 * fri", "UTC", date(2026, 12, 2))


def test_next_fire_kept_per_trigger_and_fire_is_the_cron_search_itself() -> None:
    """``get_next_fire_time`` from a past fire is kept by the trigger's value and that fire:
    over random schedules, zones, fires (DST nights included) and later ``now``s it answers
    exactly what the search itself gives, for a fresh trigger and an unpickled one alike."""
    import random
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from digest.cron import _NEXT_FIRES

    rng = random.Random(8)
    exprs = ["0 7 * * *", "30 2 * * *", "0 * * * *", "*/15 1-3 * * 0", "0 9 * * 1-5",
             "15 1 29 2 *", "@daily", "45 23 28 * *"]
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
    def utc(moment: datetime | None) -> datetime | None:
        # instants: within one zone Python compares wall times, so 01:30 EDT == 01:30 EST
        return None if moment is None else moment.astimezone(UTC)

    _NEXT_FIRES.clear()
    checked = 0
    nights = [("30 * * * *", "America/New_York", datetime(2026, 11, 1, 4, tzinfo=UTC)),
              ("*/20 * * * *", "Europe/Berlin", datetime(2026, 10, 25, 0, tzinfo=UTC))]
    for expr, zone, at in nights:  # the repeated hour: two fires one wall time apart
        trigger = cron_trigger(expr, zone)
        fire = trigger.get_next_fire_time(None, at)
        for _ in range(12):
            want = trigger._next_fire(fire, fire)
            assert utc(trigger.get_next_fire_time(fire, fire)) == utc(want)
            assert utc(want) > utc(fire)  # type: ignore[operator]
            fire = want
    for _ in range(400):
        expr, zone = rng.choice(exprs), rng.choice(zones)
        trigger = cron_trigger(expr, zone)
        start = datetime(2026, rng.choice([3, 10, 11]), rng.randint(1, 28), rng.randint(0, 23),
                         rng.choice([0, 15, 30]), tzinfo=ZoneInfo(zone))
        fire = trigger.get_next_fire_time(None, start)
        for _ in range(4):
            if fire is None:
                break
            now = fire + timedelta(seconds=rng.choice([0, 1, 59, 3600]))
            twin = pickle.loads(pickle.dumps(trigger))
            want = trigger._next_fire(fire, now)  # the search, never kept
            assert utc(trigger.get_next_fire_time(fire, now)) == utc(want)
            assert utc(twin.get_next_fire_time(fire, now + timedelta(seconds=1))) == utc(want)
            assert utc(trigger._next_fire(fire, fire)) == utc(want)
            assert want is None or utc(want) > utc(fire)  # type: ignore[operator]
            fire, checked = want, checked + 1
    assert checked > 1000 and _NEXT_FIRES


def chained_fires(trigger: Any, starts: list[datetime], n: int) -> list[datetime]:
    """``n`` fires from each start, each searched from the one before (as a job moves on), as
    UTC instants (two local times of one zone compare by wall time)."""
    out: list[datetime] = []
    for start in starts:
        fire = trigger.get_next_fire_time(None, start)
        for _ in range(n):
            if fire is None:
                break
            out.append(fire.astimezone(UTC))
            fire = trigger.get_next_fire_time(fire, fire)
    return out


# the nights the clocks change in Berlin and New York, 2026, and a quiet week
DST_STARTS = [datetime(2026, 3, 7, 12, tzinfo=UTC), datetime(2026, 3, 28, 12, tzinfo=UTC),
              datetime(2026, 10, 24, 12, tzinfo=UTC), datetime(2026, 10, 31, 12, tzinfo=UTC),
              datetime(2026, 7, 1, tzinfo=UTC)]
PICKLED = [("0 7 * * *", "UTC"), ("30 2 * * *", "Europe/Berlin"), ("30 1 * * *",
           "America/New_York"), ("30 * * * *", "America/New_York"), ("*/20 * * * *",
           "Europe/Berlin"), ("0 8 1 * mon", "America/New_York"), ("15 6 * * mon-fri",
           "Asia/Kolkata"), ("0 0 29 2 *", "Australia/Lord_Howe"), ("@weekly", "Europe/Berlin")]


@pytest.mark.parametrize(("expr", "zone"), PICKLED)
def test_a_pickled_trigger_is_its_value_again_and_fires_the_same_times(expr: str,
                                                                        zone: str) -> None:
    trigger = cron_trigger(expr, zone)
    copy = pickle.loads(pickle.dumps(trigger))
    parts = trigger.triggers if isinstance(trigger, OrTrigger) else [trigger]
    copies = copy.triggers if isinstance(copy, OrTrigger) else [copy]
    assert type(copy) is type(trigger) and len(copies) == len(parts)
    for part, twin in zip(parts, copies):
        assert type(twin) is WallClockCronTrigger
        assert twin.__getstate__() == part.__getstate__()  # fields, zone, dates, skip_repeats
        assert [f.is_default for f in twin.fields] == [f.is_default for f in part.fields]
    assert str(copy) == str(trigger)
    assert chained_fires(copy, DST_STARTS, 30) == chained_fires(trigger, DST_STARTS, 30)


def test_triggers_of_one_value_unpickle_to_one_shared_trigger() -> None:
    """10,000 jobs on one schedule: each job's pickle costs a lookup, not a rebuild."""
    first = pickle.dumps(cron_trigger("0 7 * * *", "Europe/Berlin"))
    built = WallClockCronTrigger(month="*", day="*", day_of_week="*", hour="7", minute="0",
                                 timezone=ZoneInfo("Europe/Berlin"))
    second = pickle.dumps(built)
    assert second == first  # one value, one pickle, however the trigger was made
    assert pickle.loads(first) is pickle.loads(second)
    other = pickle.loads(pickle.dumps(cron_trigger("0 7 * * *", "UTC")))
    assert other is not pickle.loads(first)
    assert b"apscheduler.triggers.cron.fields" not in first  # no field objects in it


def test_a_trigger_its_cron_text_would_not_rebuild_pickles_field_by_field() -> None:
    """Pickling never changes what a trigger fires: one whose fields' text would build
    another trigger (here a field marked default that is not) is pickled as its fields'
    objects, as APScheduler does."""
    odd = WallClockCronTrigger(hour="7", minute="0", timezone=ZoneInfo("UTC"))
    odd.fields[5].is_default = True  # the hour: left out of its value, '*' if rebuilt
    data = pickle.dumps(odd)
    assert b"apscheduler.triggers.cron.fields" in data
    copy = pickle.loads(data)
    assert copy.__getstate__() == odd.__getstate__()
    start = [datetime(2026, 3, 28, 12, tzinfo=UTC)]
    assert chained_fires(copy, start, 5) == chained_fires(odd, start, 5)
    assert {f.hour for f in chained_fires(copy, start, 5)} == {7}


def test_a_pickle_of_the_field_by_field_form_loads_and_pickles_as_its_value() -> None:
    """What the job store holds from before (the trigger's fields' objects, pickle's default
    for a class with slots) loads, fires the same, and is written back as its value."""

    class Before(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is WallClockCronTrigger:
                return (getattr(copyreg, "__newobj__"), (type(obj),), obj.__getstate__())
            return NotImplemented

    for expr, zone in PICKLED:
        trigger = cron_trigger(expr, zone)
        buffer = io.BytesIO()
        Before(buffer, protocol=pickle.DEFAULT_PROTOCOL).dump(trigger)
        assert b"apscheduler.triggers.cron.fields" in buffer.getvalue()
        old = pickle.loads(buffer.getvalue())
        assert chained_fires(old, DST_STARTS, 20) == chained_fires(trigger, DST_STARTS, 20)
        assert pickle.dumps(old) == pickle.dumps(trigger)


def test_the_kept_next_fires_never_mix_a_trigger_with_one_of_the_same_value() -> None:
    """A trigger whose value does not rebuild it (the hour marked default) and the trigger
    that value does build (every hour) share a value but not their fires."""
    odd = WallClockCronTrigger(hour="7", minute="0", timezone=ZoneInfo("UTC"))
    odd.fields[5].is_default = True
    hourly = WallClockCronTrigger(minute="0", timezone=ZoneInfo("UTC"))
    assert odd._value() == hourly._value()
    fire = datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
    for first, second in ((odd, hourly), (hourly, odd)):
        from digest.cron import _NEXT_FIRES

        _NEXT_FIRES.clear()
        first.get_next_fire_time(fire, fire)
        assert odd.get_next_fire_time(fire, fire) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
        assert hourly.get_next_fire_time(fire, fire) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
