"""`relaychat schedules`: create, list, run and delete scheduled posts.

`run` queues a run now; a running server's scheduler posts it (at once, or within
SCHEDULER_POLL_SECONDS), as it posts every due run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.cli._common import console, error_exit, load_settings, run_in_session, table
from relaychat.domain.accounts.users import find_user_by_email, normalize_email
from relaychat.domain.schedules import schedules
from relaychat.domain.schedules.recurrence import zone
from relaychat.domain.schedules.schedules import Limits, ScheduleNotFound, Target, Timing
from relaychat.errors import UserNotFound
from relaychat.statuses import CatchUp, RecurrenceKind
from relaychat.storage.models import Schedule, ScheduleRun, User
from relaychat.storage.types import utcnow

schedules_app = typer.Typer(help="Manage schedules (prompts posted at set times).")


def _timing(at: str | None, rrule: str | None, cron: str | None, timezone: str) -> Timing:
    given = [
        (kind, rule)
        for kind, rule in (
            (RecurrenceKind.AT, at),
            (RecurrenceKind.RRULE, rrule),
            (RecurrenceKind.CRON, cron),
        )
        if rule
    ]
    if len(given) != 1:
        error_exit("give exactly one of --at, --rrule and --cron")
    kind, rule = given[0]
    return Timing(kind, rule, timezone)


@schedules_app.command("create")
def schedules_create(
    owner: Annotated[str, typer.Option(help="Email of the owning user; it runs as them.")],
    name: Annotated[str, typer.Option(help="A name for people.")],
    prompt: Annotated[str, typer.Option(help="What each run posts.")],
    conversation: Annotated[
        str | None, typer.Option(help="Post into this conversation of the owner's…")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="…or into one with this agent.")] = None,
    new_conversation: Annotated[
        bool, typer.Option("--new-conversation", help="With --agent: a new one each run.")
    ] = False,
    at: Annotated[str | None, typer.Option(help="Once, at this ISO time.")] = None,
    rrule: Annotated[str | None, typer.Option(help="An RFC 5545 RRULE.")] = None,
    cron: Annotated[str | None, typer.Option(help="A five-field cron expression.")] = None,
    timezone: Annotated[str, typer.Option(help="IANA timezone of the times.")] = "UTC",
    until: Annotated[
        datetime | None, typer.Option(help="No run after this time (in --timezone).")
    ] = None,
    max_runs: Annotated[int | None, typer.Option(min=1, help="Run at most this often.")] = None,
    catch_up: Annotated[
        CatchUp, typer.Option(help="Occurrences missed while down: skip, or run once.")
    ] = CatchUp.SKIP,
    disabled: Annotated[bool, typer.Option("--disabled", help="Make it disabled.")] = False,
) -> None:
    """Make a schedule; prints its id and its next runs."""
    settings = load_settings()
    timing = _timing(at, rrule, cron, timezone)
    limits = Limits(settings.schedule_min_interval_seconds, settings.schedule_max_per_user)

    async def _create(session: AsyncSession) -> tuple[Schedule, list[datetime]]:
        user = await find_user_by_email(session, owner)
        if user is None:
            raise UserNotFound(f"no user with email {owner}")
        ending = None
        if until is not None:
            ending = until if until.tzinfo else until.replace(tzinfo=zone(timezone))
        now = utcnow()
        schedule = await schedules.create_schedule(
            session,
            user,
            name=name,
            target=Target(conversation, agent, new_conversation),
            prompt=prompt,
            timing=timing,
            enabled=not disabled,
            until=ending,
            max_runs=max_runs,
            catch_up=catch_up,
            now=now,
            limits=limits,
        )
        return schedule, schedules.upcoming_runs(schedule, now)

    schedule, upcoming = run_in_session(settings, _create)
    typer.echo(f"created schedule {schedule.id} ({schedule.kind} {schedule.rule})")
    local = ZoneInfo(schedule.timezone)
    for moment in upcoming:
        typer.echo(f"next: {moment.astimezone(local).isoformat()}")


@schedules_app.command("list")
def schedules_list(
    owner: Annotated[str | None, typer.Option(help="Only this user's schedules (email).")] = None,
) -> None:
    """Print schedules as a table, with their next run and state."""

    async def _rows(session: AsyncSession) -> Sequence[Row[Schedule, str]]:
        query = select(Schedule, User.email).join(User, User.id == Schedule.user_id)
        if owner:
            query = query.where(User.email == normalize_email(owner))
        return (await session.execute(query.order_by(Schedule.created_at, Schedule.id))).all()

    output = table("id", "owner", "name", "when", "timezone", "next run", "runs", "state")
    for schedule, email in run_in_session(load_settings(), _rows):
        state = "enabled" if schedule.enabled else f"disabled: {schedule.disabled_reason or ''}"
        nxt = schedule.next_run_at
        output.add_row(
            schedule.id,
            email,
            schedule.name,
            f"{schedule.kind} {schedule.rule}",
            schedule.timezone,
            nxt.astimezone(ZoneInfo(schedule.timezone)).isoformat() if nxt else "",
            str(schedule.run_count),
            state.strip(),
        )
    console.print(output)


@schedules_app.command("run")
def schedules_run(schedule_id: str) -> None:
    """Queue a run now; a running server posts it."""

    async def _run(session: AsyncSession) -> ScheduleRun:
        schedule = await session.get(Schedule, schedule_id)
        if schedule is None:
            raise ScheduleNotFound(f"no schedule {schedule_id}")
        return await schedules.request_run(session, schedule, utcnow())

    run = run_in_session(load_settings(), _run)
    typer.echo(f"queued run {run.id} of schedule {schedule_id}")


@schedules_app.command("delete")
def schedules_delete(schedule_id: str) -> None:
    """Delete a schedule and its run history."""

    async def _delete(session: AsyncSession) -> None:
        schedule = await session.get(Schedule, schedule_id)
        if schedule is None:
            raise ScheduleNotFound(f"no schedule {schedule_id}")
        await schedules.delete_schedule(session, schedule)

    run_in_session(load_settings(), _delete)
    typer.echo(f"deleted {schedule_id}")
