"""Sending a message and getting it answered: store, publish, start the generation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.content import flatten_text
from relaychat.domain.context import branch, build_request
from relaychat.domain.generations import Providers, StartedGeneration, add_generation, resolve_model
from relaychat.domain.ids import new_id
from relaychat.domain.messages import resolve_parent
from relaychat.domain.render import message_dict
from relaychat.domain.runner import GenerationRunner, Job
from relaychat.errors import MessageNotFound, ValidationFailed
from relaychat.realtime.bus import EventBus
from relaychat.realtime.events import MessageCreated
from relaychat.storage.models import Conversation, Message
from relaychat.storage.types import utcnow


@dataclass
class ChatEngine:
    """What sending and answering messages needs beyond a database session."""

    bus: EventBus
    providers: Providers
    runner: GenerationRunner


@dataclass(frozen=True)
class Sent:
    message: Message
    started: StartedGeneration | None


async def send_message(
    session: AsyncSession,
    engine: ChatEngine,
    conversation: Conversation,
    *,
    role: str,
    sender: str | None,
    content: list[dict[str, Any]],
    parent_message_id: str | None,
    metadata: dict[str, Any] | None = None,
    respond: bool | None = None,
    api_key_id: str | None = None,
) -> Sent:
    """Store a message and, when asked (by default: when the conversation has an endpoint),
    start the reply. Everything is checked before anything is written."""
    text = flatten_text(content)
    if not text and not any(part.get("type") != "text" for part in content):
        raise ValidationFailed("message has no content", field="content")
    if respond is None:
        respond = bool(conversation.endpoint)
    endpoint_model = resolve_model(conversation, engine.providers) if respond else None
    parent_id = await resolve_parent(session, conversation.id, parent_message_id)

    now = utcnow()
    message = Message(
        id=new_id(),
        conversation_id=conversation.id,
        parent_message_id=parent_id,
        role=role,
        sender=sender,
        content=content,
        text=text,
        status="complete",
        meta=metadata or {},
        api_key_id=api_key_id,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    conversation.updated_at = now
    started = job = None
    if endpoint_model is not None:
        endpoint, model = endpoint_model
        started = await add_generation(
            session,
            conversation,
            parent_id=message.id,
            endpoint=endpoint,
            model=model,
            worker_id=engine.runner.worker_id,
        )
        job = await _job(session, conversation, started, endpoint)
    await session.commit()

    await engine.bus.publish(
        conversation.user_id,
        MessageCreated(
            conversation_id=conversation.id, message_id=message.id, message=message_dict(message)
        ),
    )
    if started is not None and job is not None:
        await _launch(engine, conversation, started, job)
    return Sent(message, started)


async def regenerate(
    session: AsyncSession, engine: ChatEngine, conversation: Conversation, message_id: str
) -> StartedGeneration:
    """A new reply beside an assistant message (or to a user message), as a sibling."""
    target = await session.get(Message, message_id)
    if target is None or target.conversation_id != conversation.id:
        raise MessageNotFound()
    parent_id = target.parent_message_id if target.role == "assistant" else target.id
    if parent_id is None:
        raise ValidationFailed("this message has nothing to answer", field="message_id")
    endpoint, model = resolve_model(conversation, engine.providers)
    started = await add_generation(
        session,
        conversation,
        parent_id=parent_id,
        endpoint=endpoint,
        model=model,
        worker_id=engine.runner.worker_id,
    )
    conversation.updated_at = utcnow()
    job = await _job(session, conversation, started, endpoint)
    await session.commit()
    await _launch(engine, conversation, started, job)
    return started


async def _job(
    session: AsyncSession, conversation: Conversation, started: StartedGeneration, endpoint: str
) -> Job:
    await session.flush()
    request_id = started.generation.request_message_id or started.response.id
    history = await branch(session, request_id)
    request = build_request(conversation, history, model=started.generation.model)
    return Job(
        generation_id=started.generation.id,
        user_id=conversation.user_id,
        conversation_id=conversation.id,
        message_id=started.response.id,
        endpoint=endpoint,
        request=request,
        # Title the conversation after its first exchange.
        wants_title=not conversation.title and len(history) == 1,
    )


async def _launch(
    engine: ChatEngine, conversation: Conversation, started: StartedGeneration, job: Job
) -> None:
    await engine.bus.publish(
        conversation.user_id,
        MessageCreated(
            conversation_id=conversation.id,
            message_id=started.response.id,
            message=message_dict(started.response),
        ),
    )
    await engine.runner.announce(job)
    engine.runner.launch(job)
