"""One run of a schedule: its prompt posted through the external message pipeline.

The prompt goes in as an external message (`metadata.source: "schedule"`) by
`relaychat.domain.intake.external.accept`, the function the gateway's
`POST /api/messages/{id}` ends in, so the reply, its events, webhooks and channel replies
follow as for any external message. The schedule acts as a key of its owner's that may
reach this one conversation (and create it, for an agent's schedule) and nothing else.

Exactly once: the run turns `posted` in the transaction that stores the message (the
fencing update comes first, and holds only while this scheduler's claim does), so a run
retried after its scheduler died either finds it posted and does nothing, or posts it.
The same transaction notes the message, reply and generation on the run, so a run posted
is never without them, whenever its process dies.

A run that cannot post because of its owner's rights (the conversation is gone or no
longer theirs, the agent no longer usable, the owner disabled) fails with the reason and
disables the schedule: every later run would fail the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.access.keys import KeyPermissions, KeyPrincipal
from relaychat.domain.agent.agents import get_visible_agent
from relaychat.domain.answering.generations import StartedGeneration
from relaychat.domain.intake import external
from relaychat.domain.intake.resolution import Caller
from relaychat.domain.messaging import conversation_ids
from relaychat.domain.messaging.chat import ChatEngine
from relaychat.errors import AppError, ConversationNotFound
from relaychat.resources import MessageView
from relaychat.statuses import MessageRole, ScheduleRunStatus
from relaychat.storage.models import Conversation, Message, Schedule, ScheduleRun, User

logger = logging.getLogger(__name__)

SOURCE = "schedule"
# Channel messages looked at for where a channel thread's replies go.
_CHANNEL_LOOKBACK = 20
# Statuses of refusals that say the schedule can never run as it is (its owner's rights).
_DISABLING = frozenset({403, 404, 409})


@dataclass(frozen=True)
class Outcome:
    """What one attempt at a run came to (None fields: nothing posted)."""

    status: ScheduleRunStatus | None
    message_id: str | None = None
    error: str | None = None


class LostClaim(Exception):
    """Another scheduler holds the run now (this one's lease lapsed): post nothing."""


def conversation_for(schedule: Schedule, run: ScheduleRun) -> str:
    """The conversation a run posts into: the schedule's, or its agent's (one per run, or
    one for the schedule), with an id derived from the run or the schedule, so a retried
    run finds the conversation its first attempt may have made."""
    if schedule.conversation_id is not None:
        return schedule.conversation_id
    if schedule.new_conversation:
        return f"schedule-{run.id}"
    return f"schedule-{schedule.id}"


def schedule_ref(schedule_id: str) -> str:
    """How a schedule appears as a message's key (`messages.api_key_id`, 36 characters)."""
    return f"sc:{schedule_id.replace('-', '')}"


def principal_for(schedule: Schedule, conversation_id: str, respond: bool) -> KeyPrincipal:
    """The schedule as a key of its owner's, reaching its one conversation."""
    named = conversation_ids.named_phone(conversation_id)
    return KeyPrincipal(
        key_id=None,
        key_ref=schedule_ref(schedule.id),
        name=f"schedule:{schedule.name}"[:200],
        owner_id=schedule.user_id,
        system=False,
        permissions=KeyPermissions(
            allowed_conversations=[conversation_id],
            can_create_conversations=schedule.agent_id is not None,
            can_respond=True,
            respond_default=respond,
            default_endpoint="agents" if schedule.agent_id else None,
            default_agent_id=schedule.agent_id,
        ),
        # A channel's thread (which the owner holds, checked below) is reached as its
        # channel would: the id names the channel's tag.
        channel_tag=named[1].lower() if named is not None and named[1] else None,
    )


async def channel_route(session: AsyncSession, conversation_id: str) -> dict[str, Any]:
    """For a channel's thread, what makes the reply go out by text: the channel and the
    numbers of the latest message that came in through it (replies go to its sender)."""
    if conversation_ids.named_phone(conversation_id) is None:
        return {}
    metas = await session.scalars(
        select(Message.meta)
        .where(Message.conversation_id == conversation_id, Message.role == MessageRole.EXTERNAL)
        .order_by(Message.created_at.desc())
        .limit(_CHANNEL_LOOKBACK)
    )
    for meta in metas:
        twilio = (meta or {}).get("twilio") or {}
        if meta.get("channel_id") and twilio.get("from") and twilio.get("to"):
            route: dict[str, Any] = {
                "channel": meta.get("channel"),
                "channel_id": meta["channel_id"],
                "twilio": {"from": twilio["from"], "to": twilio["to"]},
            }
            if meta.get("phoneNumber"):
                route["phoneNumber"] = meta["phoneNumber"]
            return route
    return {}


async def _check_rights(
    session: AsyncSession, schedule: Schedule, user: User, conversation_id: str
) -> Conversation | None:
    """The conversation (None: the run will create it); refused as its owner would be."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is not None and conversation.user_id != schedule.user_id:
        raise ConversationNotFound(
            f"conversation {conversation_id} no longer exists (or is no longer yours)"
        )
    if conversation is None and schedule.conversation_id is not None:
        raise ConversationNotFound(f"conversation {conversation_id} no longer exists")
    agent_id = schedule.agent_id or (conversation.agent_id if conversation else None)
    if agent_id:
        await get_visible_agent(session, user, agent_id)
    return conversation


def _fence(run: ScheduleRun, worker_id: str, **values: Any) -> Any:
    """An update of the run that applies only while this scheduler's claim holds."""
    return (
        update(ScheduleRun)
        .where(
            ScheduleRun.id == run.id,
            ScheduleRun.claimed_by == worker_id,
            ScheduleRun.status == ScheduleRunStatus.RUNNING,
        )
        .values(**values)
    )


async def post_run(
    sessionmaker: async_sessionmaker[AsyncSession],
    chat: ChatEngine,
    run: ScheduleRun,
    *,
    worker_id: str,
    now: datetime,
    phone_region: str,
) -> Outcome:
    """Post the run's prompt and record the outcome; a refusal fails the run (and, when it
    is about the owner's rights, disables the schedule)."""
    try:
        return await _post(sessionmaker, chat, run, worker_id, now, phone_region)
    except LostClaim:
        return Outcome(None)
    except AppError as exc:
        disable = exc.status in _DISABLING
        await _fail(sessionmaker, run, worker_id, now, f"{exc.code}: {exc.detail}", disable)
        return Outcome(ScheduleRunStatus.FAILED, error=exc.detail)


async def _post(
    sessionmaker: async_sessionmaker[AsyncSession],
    chat: ChatEngine,
    run: ScheduleRun,
    worker_id: str,
    now: datetime,
    phone_region: str,
) -> Outcome:
    async with sessionmaker() as session:
        schedule = await session.get(Schedule, run.schedule_id)
        user = await session.get(User, schedule.user_id) if schedule is not None else None
    if schedule is None or user is None:
        return Outcome(None)  # deleted meanwhile; its runs went with it
    conversation_id = conversation_for(schedule, run)
    metadata: dict[str, Any] = {
        "source": SOURCE,
        "schedule_id": schedule.id,
        "schedule_run_id": run.id,
        "occurrence_at": run.occurrence_at.isoformat(),
    }

    async def note(
        session: AsyncSession, message: MessageView, started: StartedGeneration | None
    ) -> None:
        # With the message, not after its commit: a process killed in between left the run
        # `posted` without its message or reply, so its runs could not say how the reply
        # ended (one cut short by the kill stayed unknown), and nothing filled them in later.
        await session.execute(
            update(ScheduleRun)
            .where(ScheduleRun.id == run.id)
            .values(
                message_id=message.message_id,
                reply_message_id=started.response_id if started else None,
                generation_id=started.generation_id if started else None,
            )
        )

    async def attempt(session: AsyncSession) -> external.Accepted:
        # First, the fence: from here to the commit the run is this scheduler's alone.
        fenced = await session.execute(
            _fence(
                run,
                worker_id,
                status=ScheduleRunStatus.POSTED,
                conversation_id=conversation_id,
                finished_at=now,
            )
        )
        if fenced.rowcount != 1:  # type: ignore[attr-defined]
            raise LostClaim()
        current = await session.get(User, schedule.user_id)
        assert current is not None
        conversation = await _check_rights(session, schedule, current, conversation_id)
        respond = conversation is None or bool(conversation.endpoint or conversation.agent_id)
        route = await channel_route(session, conversation_id)
        principal = principal_for(schedule, conversation_id, respond)
        caller = Caller(system=False, key_owner_id=schedule.user_id, can_name_user=False)
        return await external.accept(
            session,
            chat,
            principal,
            caller,
            conversation_id,
            external.ExternalMessage(
                content=[{"type": "text", "text": schedule.prompt}],
                metadata={**route, **metadata},
                respond=respond,
            ),
            phone_region=phone_region,
            before_commit=note,
        )

    accepted = await external.accept_joining(sessionmaker, attempt)
    async with sessionmaker() as session:
        # Apart: the schedule's row would be locked after the run's there, the reverse of
        # a schedule's deletion, for a time that says only when it last ran.
        await session.execute(
            update(Schedule).where(Schedule.id == schedule.id).values(last_run_at=now)
        )
        await session.commit()
    return Outcome(ScheduleRunStatus.POSTED, message_id=accepted.message.message_id)


async def _fail(
    sessionmaker: async_sessionmaker[AsyncSession],
    run: ScheduleRun,
    worker_id: str,
    now: datetime,
    error: str,
    disable: bool,
) -> None:
    async with sessionmaker() as session:
        failed = await session.execute(
            _fence(run, worker_id, status=ScheduleRunStatus.FAILED, error=error, finished_at=now)
        )
        if failed.rowcount == 1 and disable:  # type: ignore[attr-defined]
            await session.execute(
                update(Schedule)
                .where(Schedule.id == run.schedule_id)
                .values(enabled=False, disabled_reason=f"a run failed: {error}"[:300])
            )
        await session.commit()
