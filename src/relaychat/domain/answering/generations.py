"""Generations: start one for a message, abort it from any worker, recover orphans."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat import logs
from relaychat.domain.ids import new_id
from relaychat.domain.messaging.messages import message_row
from relaychat.domain.outbound import callbacks
from relaychat.domain.publishing import publish_after_commit
from relaychat.errors import AppError, ErrorCode, NotFound, Unprocessable
from relaychat.llm.base import ChatProvider
from relaychat.realtime.bus import EventBus
from relaychat.realtime.events import GenerationAborted, MessageCompleted
from relaychat.resources import MessageView
from relaychat.statuses import GenerationStatus, MessageRole, MessageStatus, StopReason
from relaychat.storage.models import Conversation, Generation, Message
from relaychat.storage.tables import GENERATIONS, MESSAGES
from relaychat.storage.types import utcnow

if TYPE_CHECKING:
    from relaychat.domain.answering.agent_loop import EndInWrite

logger = logging.getLogger(__name__)

ABORT_SIGNAL = "generation.abort"


class GenerationNotFound(NotFound):
    code = ErrorCode.GENERATION_NOT_FOUND
    title = "Generation not found"


class NoEndpoint(Unprocessable):
    code = ErrorCode.NO_ENDPOINT
    title = "The conversation has no endpoint to answer with"


class NoModel(Unprocessable):
    code = ErrorCode.NO_MODEL
    title = "No model is configured for this endpoint"


class Providers(Protocol):
    """What the generation engine needs from the endpoint registry."""

    def provider(self, endpoint: str) -> ChatProvider:
        """The adapter serving `endpoint`; raises EndpointNotFound."""
        ...

    def default_model(self, endpoint: str) -> str | None:
        """The model used when a conversation names none."""
        ...

    def title_model(self, endpoint: str) -> str | None:
        """The model that writes conversation titles, if one is configured."""
        ...

    def names(self) -> list[str]:
        """Every configured endpoint."""
        ...


@dataclass(frozen=True, slots=True)
class StartedGeneration:
    """A reply staged with its generation: the ids, and the empty reply as clients see it."""

    generation_id: str
    request_message_id: str
    response: MessageView
    # The request that asked for it, as stored on its row (see `add_generation`).
    request_id: str | None = None

    @property
    def response_id(self) -> str:
        return self.response.message_id


async def add_generation(
    session: AsyncSession,
    conversation: Conversation,
    *,
    parent_id: str,
    endpoint: str,
    model: str,
    worker_id: str,
    sender: str | None = None,
    created_at: datetime | None = None,
    generation_id: str | None = None,
    response_id: str | None = None,
    end: EndInWrite | None = None,
) -> StartedGeneration:
    """Stage the empty assistant reply and its generation (the caller commits); the reply is
    labelled `sender` (an agent's name), else the model.

    The messages it answers must already be staged in `session` (the first statement here
    flushes them); `created_at` places the reply after them in the conversation (see
    `messages.lock_thread`). Statements on the tables, no entities: every reply starts here.
    The generation is the work of the request being served (or of what runs it: a scheduled
    post, an agent's reply that sends a message on): its row keeps that id. The ids are new
    unless chosen before (`generation_id`, `response_id`: a job launched before its rows);
    with `end` (a job that completed before them), the rows are inserted as it ended.
    """
    now = utcnow()
    request_id = logs.current_request_id()
    response = message_row(
        conversation_id=conversation.id,
        parent_message_id=parent_id,
        role=MessageRole.ASSISTANT,
        sender=sender or model,
        content=[],
        text="",
        status=MessageStatus.STREAMING,
        endpoint=endpoint,
        model=model,
        created_at=created_at or now,
        message_id=response_id,
    )
    generation_id = generation_id or new_id()
    generation = {
        "id": generation_id,
        "user_id": conversation.user_id,
        "conversation_id": conversation.id,
        "request_message_id": parent_id,
        "response_message_id": response["id"],
        "endpoint": endpoint,
        "model": model,
        "status": GenerationStatus.RUNNING,
        "worker_id": worker_id,
        "heartbeat_at": now,
        "started_at": now,
        "request_id": request_id,
    }
    if end is not None:
        response.update(end.reply_columns())
        generation.update(end.generation_columns())
    await session.execute(insert(MESSAGES), response)
    await session.execute(insert(GENERATIONS), generation)
    return StartedGeneration(
        generation_id, parent_id, MessageView.model_validate(response), request_id
    )


async def get_owned_generation(
    session: AsyncSession, user_id: str, generation_id: str
) -> Generation:
    """The user's generation; anyone else's is reported missing."""
    generation = await session.scalar(
        select(Generation).where(Generation.id == generation_id, Generation.user_id == user_id)
    )
    if generation is None:
        raise GenerationNotFound()
    return generation


async def writers_of(
    session: AsyncSession, conversation_id: str, message_id: str | None = None
) -> dict[str, str]:
    """The generation that wrote each reply of a conversation (or only `message_id`), by
    reply message id.

    A client that reloads while a reply streams learns here which generation to abort.
    A regeneration writes a new sibling message, so each reply has one generation.
    """
    query = select(Generation.response_message_id, Generation.id).where(
        Generation.conversation_id == conversation_id
    )
    if message_id is not None:  # one message: its row by the response_message_id index
        query = query.where(Generation.response_message_id == message_id)
    return {row.response_message_id: row.id for row in await session.execute(query)}


async def request_abort(bus: EventBus, generation: Generation) -> None:
    """Ask every worker to stop this generation; the one running it does."""
    if generation.status == GenerationStatus.RUNNING:
        # A signal, sent at once: it changes no row (the worker that stops the run writes
        # the outcome, and that commit publishes generation.aborted).
        await bus.signal(ABORT_SIGNAL, {"generation_id": generation.id})


async def interrupt_orphans(session: AsyncSession, bus: EventBus, *, stale_after: timedelta) -> int:
    """Mark running generations whose lease lapsed (no heartbeat for `stale_after`) as
    interrupted; return how many. A live one is never taken, whoever runs it."""
    stale = Generation.heartbeat_at < utcnow() - stale_after
    query = select(Generation).where(Generation.status == GenerationStatus.RUNNING, stale)
    orphans = (await session.scalars(query.with_for_update(skip_locked=True))).all()
    finished = 0
    for generation in orphans:
        # Whichever process sweeps it, the generation's lines and callbacks are still the
        # work of the request that asked for it.
        with logs.working(
            generation.request_id,
            user_id=generation.user_id,
            conversation_id=generation.conversation_id,
            generation_id=generation.id,
        ):
            if await _interrupt(session, bus, generation, stale):
                finished += 1
    await session.commit()
    return finished


async def _interrupt(
    session: AsyncSession, bus: EventBus, generation: Generation, stale: ColumnElement[bool]
) -> bool:
    """Mark one orphan interrupted, in `session`; False if another sweep took it first."""
    reason = "interrupted: the server running this reply stopped before it finished"
    claimed = await session.execute(
        update(Generation)
        # The lease again: the owner may have renewed it since the select.
        .where(Generation.id == generation.id, Generation.status == GenerationStatus.RUNNING, stale)
        .values(status=GenerationStatus.INTERRUPTED, finished_at=utcnow(), error=reason)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return False  # another worker's sweep got there first
    message = await session.get(Message, generation.response_message_id)
    if message is None:
        return False
    logger.warning("generation %s interrupted: its worker's lease lapsed", generation.id)
    message.status = MessageStatus.UNFINISHED
    message.error = reason
    view = await callbacks.reply_ended(
        session,
        MessageView.model_validate(message),
        await callbacks.request_of(session, message.parent_message_id),
        user_id=generation.user_id,
        generation_id=generation.id,
        error_code=StopReason.INTERRUPTED,
        detail=reason,
    )
    publish_unfinished(
        session,
        bus,
        user_id=generation.user_id,
        generation_id=generation.id,
        message=view,
        reason=StopReason.INTERRUPTED,
    )
    return True


def publish_unfinished(
    session: AsyncSession,
    bus: EventBus,
    *,
    user_id: str,
    generation_id: str,
    message: MessageView,
    reason: StopReason,
) -> None:
    """Tell the owner's tabs, once `session` commits it, that a reply stopped early and
    what it holds."""
    publish_after_commit(
        session,
        bus,
        user_id,
        GenerationAborted(
            conversation_id=message.conversation_id,
            generation_id=generation_id,
            message_id=message.message_id,
            reason=reason,
        ),
    )
    publish_after_commit(
        session,
        bus,
        user_id,
        MessageCompleted(
            conversation_id=message.conversation_id,
            message_id=message.message_id,
            message=message,
        ),
    )


def error_code(exc: BaseException) -> tuple[str, str]:
    """A stable code and a human detail for an exception that ended a generation."""
    if isinstance(exc, AppError):
        return exc.code, exc.detail
    return ErrorCode.INTERNAL_ERROR, "the reply failed because of an internal error"
