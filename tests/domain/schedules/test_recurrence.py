"""Time rules: rrule, cron and at, in IANA timezones, across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from relaychat.domain.schedules.recurrence import (
    InvalidRecurrence,
    InvalidTimezone,
    Recurrence,
)
from relaychat.domain.schedules.schedules import Limits, ScheduleTooFrequent, Timing, check_timing
from relaychat.statuses import RecurrenceKind

NEW_YORK = "America/New_York"
MADE = datetime(2026, 3, 1, 12, 0, 17, tzinfo=UTC)
# 2026 in New York: clocks jump 02:00 -> 03:00 on 8 March, fall 02:00 -> 01:00 on 1 November.
SPRING_EVE = datetime(2026, 3, 7, 12, tzinfo=UTC)
FALL_EVE = datetime(2026, 10, 31, 12, tzinfo=UTC)


def local(instants: list[datetime], tz: str = NEW_YORK) -> list[str]:
    return [i.astimezone(ZoneInfo(tz)).isoformat() for i in instants]


def rule(kind: RecurrenceKind, text: str, tz: str = NEW_YORK) -> Recurrence:
    return Recurrence.parse(kind, text, tz, MADE)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (RecurrenceKind.RRULE, "FREQ=DAILY;BYHOUR=2;BYMINUTE=30"),
        (RecurrenceKind.CRON, "30 2 * * *"),
    ],
)
def test_a_time_the_clocks_skip_runs_once_just_after_the_jump(
    kind: RecurrenceKind, text: str
) -> None:
    """02:30 does not exist on 8 March: that day's run is at 03:30 EDT, never skipped."""
    assert local(rule(kind, text).upcoming(SPRING_EVE, 3)) == [
        "2026-03-08T03:30:00-04:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (RecurrenceKind.RRULE, "FREQ=DAILY;BYHOUR=1;BYMINUTE=30"),
        (RecurrenceKind.CRON, "30 1 * * *"),
    ],
)
def test_a_time_that_happens_twice_runs_once_the_first_time(
    kind: RecurrenceKind, text: str
) -> None:
    """01:30 happens twice on 1 November: the run is at the first (EDT), not again at EST."""
    assert local(rule(kind, text).upcoming(FALL_EVE, 3)) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00",
    ]


def test_asking_from_inside_the_repeated_hour_does_not_run_it_again() -> None:
    recurrence = rule(RecurrenceKind.RRULE, "FREQ=DAILY;BYHOUR=1;BYMINUTE=30")
    second_0140 = datetime(2026, 11, 1, 6, 40, tzinfo=UTC)  # 01:40 EST, the second pass
    assert local([recurrence.after(second_0140)]) == ["2026-11-02T01:30:00-05:00"]  # type: ignore[list-item]


def test_asking_just_after_the_jump_still_finds_the_shifted_run() -> None:
    recurrence = rule(RecurrenceKind.CRON, "30 2 * * *")
    just_after = datetime(2026, 3, 8, 7, 10, tzinfo=UTC)  # 03:10 EDT, before 03:30
    assert local([recurrence.after(just_after)]) == ["2026-03-08T03:30:00-04:00"]  # type: ignore[list-item]


def test_hourly_runs_on_the_change_days() -> None:
    hourly = rule(RecurrenceKind.RRULE, "FREQ=HOURLY;BYMINUTE=0")
    spring = hourly.upcoming(datetime(2026, 3, 8, 5, tzinfo=UTC), 5)  # from 00:00 EST
    assert local(spring) == [
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",  # 02:00 is 03:00: once
        "2026-03-08T04:00:00-04:00",
        "2026-03-08T05:00:00-04:00",
        "2026-03-08T06:00:00-04:00",
    ]
    fall = hourly.upcoming(datetime(2026, 11, 1, 4, tzinfo=UTC), 3)  # from 00:00 EDT
    assert local(fall) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T02:00:00-05:00",  # the repeated 01:00 (EST) is not run again
        "2026-11-01T03:00:00-05:00",
    ]


def test_byhour_means_minute_zero_not_the_minute_it_was_made() -> None:
    daily = rule(RecurrenceKind.RRULE, "FREQ=DAILY;BYHOUR=8", tz="Europe/Paris")
    assert local(daily.upcoming(MADE, 2), "Europe/Paris") == [
        "2026-03-02T08:00:00+01:00",
        "2026-03-03T08:00:00+01:00",
    ]


def test_rrule_until_in_utc_and_weekly_days() -> None:
    weekly = rule(
        RecurrenceKind.RRULE, "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;UNTIL=20260312T000000Z"
    )
    assert local(weekly.upcoming(MADE, 10)) == [
        "2026-03-02T09:00:00-05:00",
        "2026-03-04T09:00:00-05:00",
        "2026-03-09T09:00:00-04:00",
        "2026-03-11T09:00:00-04:00",
    ]


def test_at_is_local_unless_it_has_an_offset() -> None:
    at = rule(RecurrenceKind.AT, "2026-12-24T18:00")
    assert local(at.upcoming(MADE, 5)) == ["2026-12-24T18:00:00-05:00"]
    with_offset = rule(RecurrenceKind.AT, "2026-12-24T18:00:00+01:00")
    assert with_offset.upcoming(MADE, 5) == [datetime(2026, 12, 24, 17, tzinfo=UTC)]
    assert at.after(datetime(2026, 12, 25, tzinfo=UTC)) is None


def test_a_kept_anchor_keeps_the_phase_of_an_interval() -> None:
    """Every other day from 1 March: anchored on a run, the next runs are the same."""
    every_other = rule(RecurrenceKind.RRULE, "FREQ=DAILY;INTERVAL=2;BYHOUR=8")
    runs = every_other.upcoming(MADE, 4)
    moved = Recurrence(
        every_other.kind, every_other.rule, every_other.tz, every_other.anchor_for(runs[1])
    )
    assert moved.upcoming(runs[1], 2) == runs[2:]


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (RecurrenceKind.RRULE, "FREQ=NEVERLY"),
        (RecurrenceKind.RRULE, "FREQ=DAILY;COUNT=3"),
        (RecurrenceKind.RRULE, "DTSTART:20260101T000000\nRRULE:FREQ=DAILY"),
        (RecurrenceKind.RRULE, "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"),
        (RecurrenceKind.CRON, "61 * * * *"),
        (RecurrenceKind.CRON, "* * * * * *"),
        (RecurrenceKind.CRON, "@reboot"),
        (RecurrenceKind.AT, "next tuesday"),
    ],
)
def test_invalid_rules_are_refused(kind: RecurrenceKind, text: str) -> None:
    with pytest.raises(InvalidRecurrence):
        rule(kind, text)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "UTC+5"])
def test_unknown_timezones_are_refused(name: str) -> None:
    with pytest.raises(InvalidTimezone):
        Recurrence.parse(RecurrenceKind.CRON, "0 8 * * *", name, MADE)


def test_minimum_interval() -> None:
    limits = Limits(min_interval_seconds=60, max_per_user=50)
    check_timing(Timing(RecurrenceKind.CRON, "* * * * *", "UTC"), MADE, limits)
    for kind, text in [
        (RecurrenceKind.RRULE, "FREQ=SECONDLY;INTERVAL=30"),
        (RecurrenceKind.RRULE, "FREQ=HOURLY;BYMINUTE=0,30;BYSECOND=0,10"),
    ]:
        with pytest.raises(ScheduleTooFrequent):
            check_timing(Timing(kind, text, "UTC"), MADE, limits)
    hourly = Limits(min_interval_seconds=3600, max_per_user=50)
    with pytest.raises(ScheduleTooFrequent):
        check_timing(Timing(RecurrenceKind.CRON, "*/30 * * * *", "UTC"), MADE, hourly)
    check_timing(Timing(RecurrenceKind.CRON, "0 * * * *", "UTC"), MADE, hourly)
    assert timedelta(seconds=hourly.min_interval_seconds) == timedelta(hours=1)
