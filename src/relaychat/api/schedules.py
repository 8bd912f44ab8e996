"""Schedules: post a prompt into a conversation at set times; their runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.schedules import schedules
from relaychat.domain.schedules.schedules import Changes, Limits, Target, Timing
from relaychat.errors import ValidationFailed
from relaychat.http.deps import CurrentUser, ServicesDep, SessionDep
from relaychat.resources import Timestamp
from relaychat.settings import Settings
from relaychat.statuses import (
    CatchUp,
    MessageStatus,
    RecurrenceKind,
    RunTrigger,
    ScheduleRunStatus,
)
from relaychat.storage.models import Message, Schedule, ScheduleRun

router = APIRouter(prefix="/api/schedules", tags=["schedules"])

ScheduleId = Annotated[str, Path(max_length=64)]
Rule = Annotated[str, Field(min_length=1, max_length=1000)]


class _Timing(BaseModel):
    at: Rule | None = Field(
        None,
        description="Once, at this ISO 8601 time (local to `timezone` unless it has an offset).",
    )
    rrule: Rule | None = Field(
        None, description="An RFC 5545 RRULE, such as `FREQ=DAILY;BYHOUR=8` (no DTSTART, no COUNT)."
    )
    cron: Rule | None = Field(
        None, description="A five-field cron expression, such as `0 8 * * 1-5`."
    )

    def timing(self, timezone: str) -> Timing | None:
        given = [
            (kind, rule)
            for kind, rule in (
                (RecurrenceKind.AT, self.at),
                (RecurrenceKind.RRULE, self.rrule),
                (RecurrenceKind.CRON, self.cron),
            )
            if rule is not None
        ]
        if len(given) > 1:
            raise ValidationFailed("give one of `at`, `rrule` and `cron`", field="rrule")
        return Timing(given[0][0], given[0][1], timezone) if given else None


class ScheduleCreate(_Timing):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    conversation_id: str | None = Field(
        None, max_length=128, description="Post into this conversation of yours…"
    )
    agent_id: str | None = Field(
        None, max_length=64, description="…or into a conversation with this agent."
    )
    new_conversation: bool = Field(
        False, description="With `agent_id`: a new conversation each run (else one, reused)."
    )
    prompt: str = Field(min_length=1, max_length=schedules.MAX_PROMPT_LENGTH)
    timezone: str = Field("UTC", min_length=1, max_length=64, description="An IANA timezone.")
    enabled: bool = True
    until: AwareDatetime | None = Field(None, description="No run after this time.")
    max_runs: int | None = Field(None, ge=1, le=1_000_000, description="Runs at most this often.")
    catch_up: CatchUp = Field(
        CatchUp.SKIP,
        description="Occurrences missed while the server was down: `skip` them, or run the "
        "latest `once`.",
    )


class SchedulePatch(_Timing):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    conversation_id: str | None = Field(None, max_length=128)
    agent_id: str | None = Field(None, max_length=64)
    new_conversation: bool | None = None
    prompt: str | None = Field(None, min_length=1, max_length=schedules.MAX_PROMPT_LENGTH)
    timezone: str | None = Field(None, min_length=1, max_length=64)
    enabled: bool | None = None
    until: AwareDatetime | None = None
    max_runs: int | None = Field(None, ge=1, le=1_000_000)
    catch_up: CatchUp | None = None


class NextRun(BaseModel):
    local: str = Field(description="In the schedule's timezone, with its UTC offset.")
    utc: Timestamp


class RunOut(BaseModel):
    id: str
    occurrence_at: Timestamp
    trigger: RunTrigger
    status: ScheduleRunStatus
    missed: int = Field(description="Occurrences missed during downtime this run stands for.")
    attempts: int
    conversation_id: str | None
    message_id: str | None
    reply_message_id: str | None
    generation_id: str | None
    reply_status: MessageStatus | None = Field(description="Where the reply stands, if any.")
    error: str | None = Field(description="Why it failed, or what it skipped.")
    created_at: Timestamp
    finished_at: Timestamp | None


class ScheduleOut(BaseModel):
    id: str
    name: str
    conversation_id: str | None
    agent_id: str | None
    new_conversation: bool
    prompt: str
    kind: RecurrenceKind
    at: str | None
    rrule: str | None
    cron: str | None
    timezone: str
    enabled: bool
    disabled_reason: str | None
    until: Timestamp | None
    max_runs: int | None
    run_count: int
    catch_up: CatchUp
    next_run_at: Timestamp | None
    last_run_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    next_runs: list[NextRun] = Field(description="The next five runs (fewer if it ends).")
    last_run: RunOut | None = Field(
        description="Its newest run, as `GET …/runs` lists it; null before the first."
    )


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]


class RunList(BaseModel):
    runs: list[RunOut]
    next_before: Timestamp | None


def _limits(settings: Settings) -> Limits:
    return Limits(
        min_interval_seconds=settings.schedule_min_interval_seconds,
        max_per_user=settings.schedule_max_per_user,
    )


def _out(schedule: Schedule, now: datetime, last_run: RunOut | None) -> ScheduleOut:
    tz = ZoneInfo(schedule.timezone)
    rules = {kind: schedule.rule if schedule.kind == kind else None for kind in RecurrenceKind}
    return ScheduleOut(
        id=schedule.id,
        name=schedule.name,
        conversation_id=schedule.conversation_id,
        agent_id=schedule.agent_id,
        new_conversation=schedule.new_conversation,
        prompt=schedule.prompt,
        kind=schedule.kind,
        at=rules[RecurrenceKind.AT],
        rrule=rules[RecurrenceKind.RRULE],
        cron=rules[RecurrenceKind.CRON],
        timezone=schedule.timezone,
        enabled=schedule.enabled,
        disabled_reason=schedule.disabled_reason,
        until=schedule.until,
        max_runs=schedule.max_runs,
        run_count=schedule.run_count,
        catch_up=schedule.catch_up,
        next_run_at=schedule.next_run_at if schedule.enabled else None,
        last_run_at=schedule.last_run_at,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
        next_runs=[
            NextRun(local=moment.astimezone(tz).isoformat(), utc=moment.astimezone(UTC))
            for moment in schedules.upcoming_runs(schedule, now)
        ],
        last_run=last_run,
    )


async def _runs_out(session: AsyncSession, found: Sequence[ScheduleRun]) -> list[RunOut]:
    """The runs as listed, each with its reply's state (one read for all of them)."""
    reply_ids = [r.reply_message_id for r in found if r.reply_message_id]
    states: dict[str, MessageStatus] = {}
    if reply_ids:
        rows = await session.execute(
            select(Message.id, Message.status).where(Message.id.in_(reply_ids))
        )
        states = {row.id: row.status for row in rows}
    return [
        _run_out(r, states.get(r.reply_message_id) if r.reply_message_id else None) for r in found
    ]


async def _outs(
    session: AsyncSession, found: Sequence[Schedule], now: datetime
) -> list[ScheduleOut]:
    """The schedules with their last runs: two reads, whatever their number."""
    last = await schedules.last_runs(session, [s.id for s in found])
    runs = dict(zip(last, await _runs_out(session, list(last.values())), strict=True))
    return [_out(s, now, runs.get(s.id)) for s in found]


def _run_out(run: ScheduleRun, reply_status: MessageStatus | None) -> RunOut:
    return RunOut(
        id=run.id,
        occurrence_at=run.occurrence_at,
        trigger=run.trigger,
        status=run.status,
        missed=run.missed,
        attempts=run.attempts,
        conversation_id=run.conversation_id,
        message_id=run.message_id,
        reply_message_id=run.reply_message_id,
        generation_id=run.generation_id,
        reply_status=reply_status,
        error=run.error,
        created_at=run.created_at,
        finished_at=run.finished_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: ScheduleCreate, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> ScheduleOut:
    """Make a schedule: at these times, post `prompt` into the conversation as you would."""
    timing = body.timing(body.timezone)
    if timing is None:
        raise ValidationFailed("give one of `at`, `rrule` and `cron`", field="rrule")
    now = services.clock.now()
    schedule = await schedules.create_schedule(
        session,
        user,
        name=body.name,
        target=Target(body.conversation_id, body.agent_id, body.new_conversation),
        prompt=body.prompt,
        timing=timing,
        enabled=body.enabled,
        until=body.until,
        max_runs=body.max_runs,
        catch_up=body.catch_up,
        now=now,
        limits=_limits(services.settings),
    )
    services.scheduler.wake()
    return _out(schedule, now, None)


@router.get("")
async def list_(user: CurrentUser, session: SessionDep, services: ServicesDep) -> ScheduleList:
    """Your schedules, oldest first."""
    found = await schedules.list_schedules(session, user.id)
    return ScheduleList(schedules=await _outs(session, found, services.clock.now()))


async def owned_schedule(
    schedule_id: ScheduleId, user: CurrentUser, session: SessionDep
) -> Schedule:
    """The caller's schedule named in the path (404 for anyone else's)."""
    return await schedules.get_schedule(session, user.id, schedule_id)


OwnedSchedule = Annotated[Schedule, Depends(owned_schedule)]


@router.get("/{schedule_id}")
async def get(schedule: OwnedSchedule, session: SessionDep, services: ServicesDep) -> ScheduleOut:
    (out,) = await _outs(session, [schedule], services.clock.now())
    return out


@router.patch("/{schedule_id}")
async def patch(
    schedule: OwnedSchedule,
    body: SchedulePatch,
    user: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
) -> ScheduleOut:
    """Change any part; a new time rule, timezone, `until` or `max_runs`, or enabling it
    again, plans the next run from now."""
    fields = body.model_fields_set
    timezone = body.timezone or schedule.timezone
    timing = body.timing(timezone)
    if timing is None and body.timezone is not None:
        timing = Timing(schedule.kind, schedule.rule, timezone)
    target = None
    if fields & {"conversation_id", "agent_id", "new_conversation"}:
        # A new target replaces the old one whole: naming one clears the other.
        named = fields & {"conversation_id", "agent_id"}
        agent_id = body.agent_id if named else schedule.agent_id
        new_conversation = body.new_conversation
        if new_conversation is None:  # kept while the target is an agent, else off
            new_conversation = schedule.new_conversation and agent_id is not None
        target = Target(
            body.conversation_id if named else schedule.conversation_id,
            agent_id,
            new_conversation,
        )
    for name in ("name", "prompt", "enabled", "catch_up", "new_conversation"):
        if name in fields and getattr(body, name) is None:
            raise ValidationFailed(f"`{name}` cannot be null", field=name)
    now = services.clock.now()
    changed = await schedules.update_schedule(
        session,
        user,
        schedule,
        Changes(
            fields_set=frozenset(fields),
            name=body.name,
            prompt=body.prompt,
            timing=timing,
            target=target,
            enabled=body.enabled,
            until=body.until,
            max_runs=body.max_runs,
            catch_up=body.catch_up,
        ),
        now=now,
        limits=_limits(services.settings),
    )
    services.scheduler.wake()
    (out,) = await _outs(session, [changed], now)
    return out


@router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(schedule: OwnedSchedule, session: SessionDep) -> None:
    """Delete the schedule and its run history; messages it posted stay."""
    await schedules.delete_schedule(session, schedule)


@router.post("/{schedule_id}/run", status_code=status.HTTP_202_ACCEPTED)
async def run_now(schedule: OwnedSchedule, session: SessionDep, services: ServicesDep) -> RunOut:
    """Run it now, once, besides its times; the run is posted by the scheduler at once."""
    run = await schedules.request_run(session, schedule, services.clock.now())
    services.scheduler.wake()
    return _run_out(run, None)


@router.get("/{schedule_id}/runs")
async def runs(
    schedule: OwnedSchedule,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    before: Annotated[
        AwareDatetime | None, Query(description="`next_before` of the previous page.")
    ] = None,
) -> RunList:
    """The schedule's runs, newest first: when, where, the message, the reply, the error."""
    found = await schedules.list_runs(session, schedule, limit=limit, before=before)
    return RunList(
        runs=await _runs_out(session, found),
        next_before=found[-1].occurrence_at if len(found) == limit else None,
    )
