"""Due occurrences into runs: on time, or after downtime by the schedule's `catch_up`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from relaychat.domain.schedules.planning import plan_due
from relaychat.domain.schedules.recurrence import Recurrence
from relaychat.statuses import CatchUp, RecurrenceKind, RunTrigger, ScheduleRunStatus

MADE = datetime(2026, 6, 1, tzinfo=UTC)
HOURLY = Recurrence.parse(RecurrenceKind.CRON, "0 * * * *", "UTC", MADE)
LATE = timedelta(seconds=60)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 6, 1, hour, minute, tzinfo=UTC)


def test_an_occurrence_on_time_runs() -> None:
    plan = plan_due(
        HOURLY,
        next_run_at=at(3),
        now=at(3) + timedelta(seconds=2),
        late_after=LATE,
        catch_up=CatchUp.SKIP,
        until=None,
        runs_left=None,
    )
    assert [(r.occurrence_at, r.trigger, r.status, r.missed) for r in plan.runs] == [
        (at(3), RunTrigger.SCHEDULE, ScheduleRunStatus.PENDING, 0)
    ]
    assert plan.next_run_at == at(4)
    assert plan.handed == 1


def test_skip_after_downtime_runs_nothing_and_says_so() -> None:
    plan = plan_due(
        HOURLY,
        next_run_at=at(3),
        now=at(7, 30),
        late_after=LATE,
        catch_up=CatchUp.SKIP,
        until=None,
        runs_left=None,
    )
    [run] = plan.runs
    assert (run.occurrence_at, run.status, run.missed) == (at(7), ScheduleRunStatus.SKIPPED, 4)
    assert run.note is not None and "skipped 5 occurrences" in run.note
    assert plan.next_run_at == at(8)
    assert plan.handed == 0


def test_once_after_downtime_runs_the_latest_once() -> None:
    plan = plan_due(
        HOURLY,
        next_run_at=at(3),
        now=at(7, 30),
        late_after=LATE,
        catch_up=CatchUp.ONCE,
        until=None,
        runs_left=None,
    )
    [run] = plan.runs
    assert (run.occurrence_at, run.trigger, run.status, run.missed) == (
        at(7),
        RunTrigger.CATCH_UP,
        ScheduleRunStatus.PENDING,
        4,
    )
    assert plan.next_run_at == at(8)
    assert plan.handed == 1


def test_skip_with_the_latest_on_time_runs_it_and_records_the_missed() -> None:
    plan = plan_due(
        HOURLY,
        next_run_at=at(3),
        now=at(5) + timedelta(seconds=5),
        late_after=LATE,
        catch_up=CatchUp.SKIP,
        until=None,
        runs_left=None,
    )
    assert [(r.occurrence_at, r.status, r.missed) for r in plan.runs] == [
        (at(4), ScheduleRunStatus.SKIPPED, 1),
        (at(5), ScheduleRunStatus.PENDING, 0),
    ]


def test_a_single_late_occurrence_is_missed_too() -> None:
    plan = plan_due(
        HOURLY,
        next_run_at=at(3),
        now=at(3, 10),
        late_after=LATE,
        catch_up=CatchUp.SKIP,
        until=None,
        runs_left=None,
    )
    assert [(r.occurrence_at, r.status) for r in plan.runs] == [(at(3), ScheduleRunStatus.SKIPPED)]


def test_max_runs_and_until_end_the_schedule() -> None:
    last = plan_due(
        HOURLY,
        next_run_at=at(3),
        now=at(3),
        late_after=LATE,
        catch_up=CatchUp.SKIP,
        until=None,
        runs_left=1,
    )
    assert last.handed == 1 and last.next_run_at is None
    ended = plan_due(
        HOURLY,
        next_run_at=at(3),
        now=at(3),
        late_after=LATE,
        catch_up=CatchUp.SKIP,
        until=at(3, 30),
        runs_left=None,
    )
    assert ended.handed == 1 and ended.next_run_at is None


def test_nothing_due_changes_nothing() -> None:
    plan = plan_due(
        HOURLY,
        next_run_at=at(3),
        now=at(2, 59),
        late_after=LATE,
        catch_up=CatchUp.ONCE,
        until=None,
        runs_left=None,
    )
    assert plan.runs == [] and plan.next_run_at == at(3)
