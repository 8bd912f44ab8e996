"""Schedules as their owner manages them: create, change, list, delete, and their checks.

`check_*` validates and authorizes; nothing is written until every check passed. Each
schedule acts with its owner's rights: its conversation must be theirs and its agent one
they may use, when it is made and again at every run (domain.schedules.runs).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from relaychat.domain.agent.agents import get_visible_agent
from relaychat.domain.ids import new_id
from relaychat.domain.limits import text_problem
from relaychat.domain.messaging.conversations import get_owned_conversation
from relaychat.domain.schedules.recurrence import Recurrence
from relaychat.errors import Conflict, ErrorCode, NotFound, Unprocessable, ValidationFailed
from relaychat.statuses import CatchUp, RecurrenceKind, RunTrigger, ScheduleRunStatus
from relaychat.storage.models import Schedule, ScheduleRun, User

# Occurrences looked at when checking the minimum interval between two runs.
INTERVAL_SAMPLE = 100
# How many upcoming runs an answer shows.
NEXT_RUNS = 5
MAX_PROMPT_LENGTH = 32_000


class ScheduleNotFound(NotFound):
    code = ErrorCode.SCHEDULE_NOT_FOUND
    title = "Schedule not found"


class ScheduleTooFrequent(Unprocessable):
    code = ErrorCode.SCHEDULE_TOO_FREQUENT
    title = "The schedule would run too often"


class ScheduleLimitReached(Conflict):
    """409, not 422: the request is sound, the user's other schedules are in the way."""

    code = ErrorCode.SCHEDULE_LIMIT_REACHED
    title = "Too many schedules"


@dataclass(frozen=True)
class Limits:
    """The settings that bound schedules (SCHEDULE_MIN_INTERVAL_SECONDS, SCHEDULE_MAX_PER_USER)."""

    min_interval_seconds: float
    max_per_user: int


@dataclass(frozen=True)
class Timing:
    """When a schedule runs, as its owner states it."""

    kind: RecurrenceKind
    rule: str
    timezone: str


@dataclass(frozen=True)
class Target:
    """Where a schedule posts: a conversation, or an agent's (new or reused) conversation."""

    conversation_id: str | None
    agent_id: str | None
    new_conversation: bool


def recurrence_of(schedule: Schedule) -> Recurrence:
    """The schedule's parsed rule (stored rules were checked when they were written)."""
    return Recurrence.parse(
        schedule.kind, schedule.rule, schedule.timezone, schedule.anchor_at, probe=False
    )


def check_timing(timing: Timing, now: datetime, limits: Limits) -> Recurrence:
    """The rule parsed, refused if invalid or if two runs come closer than the minimum."""
    recurrence = Recurrence.parse(timing.kind, timing.rule, timing.timezone, now)
    if timing.kind == RecurrenceKind.AT:
        return recurrence
    times = recurrence.upcoming(now, INTERVAL_SAMPLE)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    shortest = min(gaps, default=None)
    if shortest is not None and shortest < timedelta(seconds=limits.min_interval_seconds):
        raise ScheduleTooFrequent(
            f"two runs would be {shortest.total_seconds():g} s apart; the minimum is "
            f"{limits.min_interval_seconds:g} s (SCHEDULE_MIN_INTERVAL_SECONDS)",
            field=str(timing.kind),
            min_interval_seconds=limits.min_interval_seconds,
        )
    return recurrence


def check_prompt(prompt: str) -> str:
    if not prompt.strip() or len(prompt) > MAX_PROMPT_LENGTH:
        raise ValidationFailed(
            f"the prompt must be 1 to {MAX_PROMPT_LENGTH} characters", field="prompt"
        )
    if problem := text_problem(prompt):
        raise ValidationFailed(f"the prompt {problem}", field="prompt")
    return prompt


async def check_target(session: AsyncSession, user: User, target: Target) -> None:
    """The conversation must be the user's, the agent one they may use (404 otherwise,
    as for an id that names nothing)."""
    if (target.conversation_id is None) == (target.agent_id is None):
        raise ValidationFailed(
            "name either `conversation_id` or `agent_id`", field="conversation_id"
        )
    if target.new_conversation and target.agent_id is None:
        raise ValidationFailed(
            "`new_conversation` needs an `agent_id` to start each conversation with",
            field="new_conversation",
        )
    if target.conversation_id is not None:
        await get_owned_conversation(session, user.id, target.conversation_id)
    if target.agent_id is not None:
        await get_visible_agent(session, user, target.agent_id)


def first_run(
    recurrence: Recurrence, now: datetime, until: datetime | None, max_runs: int | None
) -> datetime | None:
    """The first occurrence after `now`, or None if the schedule would never run."""
    if max_runs is not None and max_runs <= 0:
        return None
    upcoming = recurrence.upcoming(now, 1, until)
    return upcoming[0] if upcoming else None


def never_runs(kind: RecurrenceKind) -> InvalidSchedule:
    return InvalidSchedule(
        "the schedule would never run: its time is past (or after `until`)", field=str(kind)
    )


class InvalidSchedule(ValidationFailed):
    """A schedule whose parts are each valid but which, together, never runs."""


async def count_schedules(session: AsyncSession, user_id: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Schedule).where(Schedule.user_id == user_id)
    )
    return int(count or 0)


async def create_schedule(
    session: AsyncSession,
    user: User,
    *,
    name: str,
    target: Target,
    prompt: str,
    timing: Timing,
    enabled: bool,
    until: datetime | None,
    max_runs: int | None,
    catch_up: CatchUp,
    now: datetime,
    limits: Limits,
) -> Schedule:
    """Check everything, then store the schedule with its first run's time."""
    check_prompt(prompt)
    recurrence = check_timing(timing, now, limits)
    nxt = first_run(recurrence, now, until, max_runs)
    if nxt is None:
        raise never_runs(timing.kind)
    await check_target(session, user, target)
    # Counted last and with the row written in the same transaction: a burst of creations
    # can overshoot by the few that race, never by more (a soft limit, like a quota).
    if await count_schedules(session, user.id) >= limits.max_per_user:
        raise ScheduleLimitReached(
            f"you have {limits.max_per_user} schedules, the most allowed "
            "(SCHEDULE_MAX_PER_USER); delete one first",
            max_per_user=limits.max_per_user,
        )
    schedule = Schedule(
        id=new_id(),
        user_id=user.id,
        name=name,
        conversation_id=target.conversation_id,
        agent_id=target.agent_id,
        new_conversation=target.new_conversation,
        prompt=prompt,
        kind=timing.kind,
        rule=recurrence.rule,
        timezone=timing.timezone,
        anchor_at=recurrence.anchor,
        until=until,
        max_runs=max_runs,
        catch_up=catch_up,
        enabled=enabled,
        next_run_at=nxt,
        run_count=0,
        created_at=now,
        updated_at=now,
    )
    session.add(schedule)
    await session.commit()
    return schedule


async def get_schedule(session: AsyncSession, user_id: str, schedule_id: str) -> Schedule:
    """The user's schedule; anyone else's is reported missing."""
    schedule = await session.scalar(
        select(Schedule).where(Schedule.id == schedule_id, Schedule.user_id == user_id)
    )
    if schedule is None:
        raise ScheduleNotFound()
    return schedule


async def list_schedules(session: AsyncSession, user_id: str) -> Sequence[Schedule]:
    """The user's schedules, oldest first."""
    query = (
        select(Schedule)
        .where(Schedule.user_id == user_id)
        .order_by(Schedule.created_at, Schedule.id)
    )
    return (await session.scalars(query)).all()


@dataclass(frozen=True)
class Changes:
    """A PATCH: None leaves a field as it is; `fields_set` tells a cleared `until` apart."""

    fields_set: frozenset[str]
    name: str | None = None
    prompt: str | None = None
    timing: Timing | None = None
    target: Target | None = None
    enabled: bool | None = None
    until: datetime | None = None
    max_runs: int | None = None
    catch_up: CatchUp | None = None


async def update_schedule(
    session: AsyncSession,
    user: User,
    schedule: Schedule,
    changes: Changes,
    *,
    now: datetime,
    limits: Limits,
) -> Schedule:
    """Apply a change; a new rule, timezone, `until` or a re-enabling plans the next run
    from now (occurrences that passed while it was off are not caught up)."""
    if changes.prompt is not None:
        check_prompt(changes.prompt)
    replan = False
    recurrence = recurrence_of(schedule)
    if changes.timing is not None:
        recurrence = check_timing(changes.timing, now, limits)
        replan = True
    if changes.target is not None:
        await check_target(session, user, changes.target)
    until = changes.until if "until" in changes.fields_set else schedule.until
    max_runs = changes.max_runs if "max_runs" in changes.fields_set else schedule.max_runs
    enabling = changes.enabled is True and not schedule.enabled
    replan = replan or enabling or {"until", "max_runs"} & changes.fields_set != set()
    nxt = schedule.next_run_at
    if replan:
        left = None if max_runs is None else max_runs - schedule.run_count
        nxt = first_run(recurrence, now, until, left)
        if nxt is None and (changes.timing is not None or enabling):
            raise never_runs(recurrence.kind)
    # Every check passed: write.
    if changes.name is not None:
        schedule.name = changes.name
    if changes.prompt is not None:
        schedule.prompt = changes.prompt
    if changes.timing is not None:
        schedule.kind = changes.timing.kind
        schedule.rule = recurrence.rule
        schedule.timezone = changes.timing.timezone
        schedule.anchor_at = recurrence.anchor
    if changes.target is not None:
        schedule.conversation_id = changes.target.conversation_id
        schedule.agent_id = changes.target.agent_id
        schedule.new_conversation = changes.target.new_conversation
    if changes.catch_up is not None:
        schedule.catch_up = changes.catch_up
    schedule.until = until
    schedule.max_runs = max_runs
    if changes.enabled is not None:
        schedule.enabled = changes.enabled
        if changes.enabled:
            schedule.disabled_reason = None
    schedule.next_run_at = nxt
    schedule.updated_at = now
    await session.commit()
    return schedule


async def delete_schedule(session: AsyncSession, schedule: Schedule) -> None:
    """Delete the schedule and its run history (messages it posted stay)."""
    await session.delete(schedule)
    await session.commit()


def upcoming_runs(schedule: Schedule, now: datetime, count: int = NEXT_RUNS) -> list[datetime]:
    """The next runs of an enabled schedule, in UTC (none for a disabled or finished one)."""
    if not schedule.enabled or schedule.next_run_at is None:
        return []
    left = None if schedule.max_runs is None else schedule.max_runs - schedule.run_count
    if left is not None:
        count = min(count, left)
    if count <= 0:
        return []
    first = max(schedule.next_run_at, now)
    times = [schedule.next_run_at] if schedule.next_run_at >= now else []
    times += recurrence_of(schedule).upcoming(first, count - len(times), schedule.until)
    return times[:count]


async def request_run(session: AsyncSession, schedule: Schedule, now: datetime) -> ScheduleRun:
    """A run now, at its owner's request, whatever the schedule's times (a disabled
    schedule too: asking is explicit). The scheduler picks it up at once."""
    run = ScheduleRun(
        id=new_id(),
        schedule_id=schedule.id,
        occurrence_at=now,
        trigger=RunTrigger.MANUAL,
        status=ScheduleRunStatus.PENDING,
        missed=0,
        attempts=0,
        lease_until=now,
        created_at=now,
    )
    session.add(run)
    await session.commit()
    return run


async def last_runs(session: AsyncSession, schedule_ids: Sequence[str]) -> dict[str, ScheduleRun]:
    """Each of these schedules' newest run (by occurrence), by schedule id, in one statement:
    one probe per schedule down the (schedule_id, occurrence_at) unique index, however long
    its history (a window over all runs would read every one of them)."""
    if not schedule_ids:
        return {}
    older = aliased(ScheduleRun)
    newest = (
        select(older.id)
        .where(older.schedule_id == Schedule.id)
        .order_by(older.occurrence_at.desc(), older.id)
        .limit(1)
        .correlate(Schedule)
        .scalar_subquery()
    )
    query = (
        select(ScheduleRun)
        .join(Schedule, ScheduleRun.id == newest)
        .where(Schedule.id.in_(schedule_ids))
    )
    return {run.schedule_id: run for run in await session.scalars(query)}


async def list_runs(
    session: AsyncSession, schedule: Schedule, *, limit: int, before: datetime | None = None
) -> Sequence[ScheduleRun]:
    """The schedule's runs, newest occurrence first."""
    query = select(ScheduleRun).where(ScheduleRun.schedule_id == schedule.id)
    if before is not None:
        query = query.where(ScheduleRun.occurrence_at < before)
    query = query.order_by(ScheduleRun.occurrence_at.desc(), ScheduleRun.id).limit(limit)
    return (await session.scalars(query)).all()
