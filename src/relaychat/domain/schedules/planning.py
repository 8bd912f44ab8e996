"""Turning a schedule's due occurrences into runs: on time, or caught up after downtime.

An occurrence is missed when the scheduler finds it more than `late_after` late (nothing
ran while it came), or when a later one is due too. Missed occurrences follow the
schedule's `catch_up`: `skip` runs none of them and records one `skipped` run standing
for them all; `once` runs the latest of them, once. Either way the run history says how
many were missed (`missed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from relaychat.domain.schedules.recurrence import Recurrence
from relaychat.statuses import CatchUp, RunTrigger, ScheduleRunStatus

# Due occurrences counted one by one after downtime; beyond this (a schedule every
# minute, down for months) the count is cut short and the plan jumps to now.
MAX_COUNTED = 10_000


@dataclass(frozen=True)
class PlannedRun:
    occurrence_at: datetime
    trigger: RunTrigger
    status: ScheduleRunStatus
    missed: int = 0
    note: str | None = None


@dataclass
class Plan:
    runs: list[PlannedRun] = field(default_factory=list)
    next_run_at: datetime | None = None
    anchor: datetime | None = None
    # Runs handed out that count against `max_runs` (skipped ones do not).
    handed: int = 0


def plan_due(
    recurrence: Recurrence,
    *,
    next_run_at: datetime,
    now: datetime,
    late_after: timedelta,
    catch_up: CatchUp,
    until: datetime | None,
    runs_left: int | None,
) -> Plan:
    """The runs for the occurrences due by `now` (from `next_run_at` on), and what is next."""
    due: list[datetime] = []
    counted = 0
    occurrence: datetime | None = next_run_at
    while occurrence is not None and occurrence <= now and counted < MAX_COUNTED:
        counted += 1
        due = [*due[-1:], occurrence]  # only the last two are needed
        occurrence = recurrence.after(occurrence)
        if occurrence is not None and until is not None and occurrence > until:
            occurrence = None
    plan = Plan()
    if not due:
        plan.next_run_at = next_run_at
        return plan
    latest = due[-1]
    on_time = now - latest <= late_after
    earlier = counted - 1  # due before the latest: missed whatever happens
    if on_time and earlier == 0:
        plan.runs.append(PlannedRun(latest, RunTrigger.SCHEDULE, ScheduleRunStatus.PENDING))
    elif catch_up == CatchUp.ONCE:
        plan.runs.append(
            PlannedRun(
                latest,
                RunTrigger.SCHEDULE if on_time else RunTrigger.CATCH_UP,
                ScheduleRunStatus.PENDING,
                missed=earlier,
                note=f"ran once for {counted} occurrences due while no scheduler ran",
            )
        )
    elif on_time:
        plan.runs.append(
            PlannedRun(
                due[-2],
                RunTrigger.SCHEDULE,
                ScheduleRunStatus.SKIPPED,
                missed=earlier - 1,
                note=f"skipped {earlier} occurrences missed while no scheduler ran "
                "(catch_up: skip)",
            )
        )
        plan.runs.append(PlannedRun(latest, RunTrigger.SCHEDULE, ScheduleRunStatus.PENDING))
    else:
        plan.runs.append(
            PlannedRun(
                latest,
                RunTrigger.SCHEDULE,
                ScheduleRunStatus.SKIPPED,
                missed=earlier,
                note=f"skipped {counted} occurrences missed while no scheduler ran "
                "(catch_up: skip)",
            )
        )
    plan.handed = sum(1 for run in plan.runs if run.status == ScheduleRunStatus.PENDING)
    plan.anchor = recurrence.anchor_for(latest)
    left = None if runs_left is None else runs_left - plan.handed
    if left is not None and left <= 0:
        return plan
    if counted >= MAX_COUNTED:  # counting was cut short: go on from now
        occurrence = recurrence.after(now)
    plan.next_run_at = (
        None if occurrence is None or (until is not None and occurrence > until) else occurrence
    )
    return plan
