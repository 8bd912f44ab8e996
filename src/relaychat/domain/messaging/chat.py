"""Sending a message and getting it answered: store, publish, start the generation."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.agent.agent_cache import AgentCache
from relaychat.domain.agent.agents import AgentSpec
from relaychat.domain.agent.toolbox import Toolbox
from relaychat.domain.answering.agent_loop import Job
from relaychat.domain.answering.generations import Providers, StartedGeneration, add_generation
from relaychat.domain.answering.listeners import ReplyListener
from relaychat.domain.answering.replies import ReplyPlan, plan_reply
from relaychat.domain.answering.runner import GenerationRunner
from relaychat.domain.limits import check_metadata
from relaychat.domain.messaging.content import flatten_text
from relaychat.domain.messaging.context import Turn, branch, build_request
from relaychat.domain.messaging.conversations import get_owned_conversation
from relaychat.domain.messaging.messages import (
    ThreadTip,
    later_than,
    lock_thread,
    message_row,
    resolve_parent,
)
from relaychat.domain.outbound import callbacks
from relaychat.domain.outbound.callbacks import RequestRef
from relaychat.domain.publishing import publish_after_commit
from relaychat.errors import AppError, MessageNotFound, ValidationFailed
from relaychat.llm.tools.base import ToolContext, ToolError, ToolSet
from relaychat.llm.types import ToolChoice, ToolSpec
from relaychat.realtime.bus import EventBus, encode_body
from relaychat.realtime.events import MessageCreated, MessageMcpUnavailable
from relaychat.resources import MessageView
from relaychat.statuses import MessageRole, MessageStatus
from relaychat.storage.models import Conversation, Message
from relaychat.storage.tables import MESSAGES

# How many agent-to-agent hops one chain of send_message calls may take.
MAX_AGENT_HOPS = 3


@dataclass
class ChatEngine:
    """What sending and answering messages needs beyond a database session."""

    sessionmaker: async_sessionmaker[AsyncSession]
    bus: EventBus
    providers: Providers
    runner: GenerationRunner
    agents: AgentCache
    toolbox: Toolbox | None = None
    max_steps: int = 10


@dataclass(frozen=True)
class CallerTools:
    """Tools a caller offers the model and runs itself (the OpenAI-compatible API): the
    reply ends with the model's calls of them, stored as its `tool_call` parts."""

    tools: Sequence[ToolSpec]
    choice: ToolChoice | None = None


@dataclass(frozen=True)
class ReplyIds:
    """The ids of a reply chosen before its rows are written (see `reply_job`)."""

    generation_id: str
    request_message_id: str
    response_id: str
    request_id: str | None = None


@dataclass(frozen=True)
class Sent:
    message: MessageView
    started: StartedGeneration | None
    # The id of the `message.created` event: a stream resumed after it sees the whole reply.
    event_id: str | None = None


# Writes of a caller's own that must commit with the message or not at all, given the
# message and its reply's generation (a schedule's run notes them: domain.schedules.runs).
BeforeCommit = Callable[[AsyncSession, MessageView, StartedGeneration | None], Awaitable[None]]


def checked_text(content: list[dict[str, Any]]) -> str:
    """The message's text; refused when it has no content at all."""
    text = flatten_text(content)
    # Whitespace is no message: it would only be sent to the model as an empty turn.
    if not text.strip() and not any(part.get("type") != "text" for part in content):
        raise ValidationFailed("message has no content: send some text", field="content")
    return text


async def send_message(
    session: AsyncSession,
    engine: ChatEngine,
    conversation: Conversation,
    *,
    role: MessageRole,
    sender: str | None,
    content: list[dict[str, Any]],
    parent_message_id: str | None,
    new_root: bool = False,
    metadata: dict[str, Any] | None = None,
    respond: bool | None = None,
    api_key_id: str | None = None,
    model_override: str | None = None,
    agent_override: str | None = None,
    caller_tools: CallerTools | None = None,
    before_commit: BeforeCommit | None = None,
    listener: ReplyListener | None = None,
    launched: Job | None = None,
    alone: ThreadTip | None = None,
) -> Sent:
    """Store a message and, when asked (by default: when the conversation has an endpoint),
    start the reply, handing its pieces to `listener` if given. Everything is checked
    before anything is written.

    `launched`: the reply's job, already running (built by `reply_job` from what the caller
    knew before writing anything, with its `stored` future set): the message (the one it
    `answers`) and the reply are written with its ids, and it learns the commit's
    outcome through that future instead of being launched here; if this fails, the caller
    discards it (having told its listener why).

    `alone`: the thread's tip when the caller is its only writer, for a conversation staged
    in this same transaction (no one else sees it until the commit): no lock is taken and
    nothing read, and the parent is `parent_message_id` (trusted) or that tip.
    """
    if launched is not None and (
        launched.answers is None or launched.stored is None or not respond
    ):
        raise ValueError("a launched reply needs the message it answers, `stored`, respond=True")
    text = checked_text(content)
    check_metadata(metadata)
    if respond is None:
        respond = bool(conversation.endpoint)
    plan = (
        await plan_reply(
            session,
            engine.providers,
            engine.agents,
            conversation,
            model_override=model_override,
            agent_override=agent_override,
        )
        if respond
        else None
    )
    # From here to the commit, other writers of this conversation wait: the parent chosen
    # is still the latest message when this one is inserted.
    if alone is not None:
        if role == MessageRole.EXTERNAL:  # counted unseen by the lock's write
            raise ValueError("an external message takes the thread's lock")
        tip = alone
        parent_id = None if new_root else parent_message_id or tip.message_id
    else:
        tip = await lock_thread(session, conversation, unseen=role == MessageRole.EXTERNAL)
        parent_id = (
            None
            if new_root
            else await resolve_parent(session, conversation.id, parent_message_id, tip)
        )

    now = tip.next_time()
    row = message_row(
        conversation_id=conversation.id,
        parent_message_id=parent_id,
        role=role,
        sender=sender,
        content=content,
        text=text,
        status=MessageStatus.COMPLETE,
        metadata=metadata,
        api_key_id=api_key_id,
        created_at=now,
        message_id=launched.answers.id if launched and launched.answers else None,
    )
    # A statement on the table, not an entity: cheaper than a unit of work, and what the
    # message is for everyone (the caller, events, webhooks) is this view of its row. The
    # conversation's row needs no write: lock_thread's marked it updated.
    await session.execute(insert(MESSAGES), row)
    message = MessageView.model_validate(row)
    await callbacks.message_created(session, conversation, message)
    started = job = None
    # A launched reply that completed before this write: its rows are inserted as it ended,
    # and its end written with them (decided here, once: see `Job.end_in_write`).
    end = launched.end_in_write if launched is not None else None
    if plan is not None:
        started = await add_generation(
            session,
            conversation,
            parent_id=message.message_id,
            endpoint=plan.endpoint,
            model=plan.model,
            worker_id=engine.runner.worker_id,
            sender=plan.sender,
            created_at=later_than(now),
            generation_id=launched.generation_id if launched else None,
            response_id=launched.message_id if launched else None,
            end=end,
        )
        job = launched or reply_job(
            engine,
            conversation,
            plan,
            # Read in the transaction that wrote the request: its row is there already.
            await branch(session, started.request_message_id),
            started,
            metadata or {},
            api_key_id=api_key_id,
            caller_tools=caller_tools,
            listener=listener,
        )
    # Rendered before the commit: what cannot be sent to clients is never stored.
    created = MessageCreated(
        conversation_id=conversation.id, message_id=message.message_id, message=message
    )
    encode_body(created)
    # Queued after whatever the caller queued (a new conversation goes out before its
    # first message) and before the reply's own events.
    queued = publish_after_commit(session, engine.bus, conversation.user_id, created)
    if started is not None and job is not None:
        _announce(session, engine, conversation, started, job)
    if before_commit is not None:
        await before_commit(session, message, started)
    if end is not None and started is not None:
        await end.written(session, started.response)
    # A reply streamed back to a listener in this process starts before the commit: the
    # upstream call overlaps it, while the runner keeps the reply off the bus and out of
    # the database until `job.stored` says the rows are there.
    if job is not None and job.listener is not None and launched is None:
        job.stored = asyncio.get_running_loop().create_future()
        engine.runner.launch(job)
    try:
        await session.commit()
    except BaseException:
        if job is not None and job.stored is not None and launched is None:
            engine.runner.discard(job)
        raise
    if job is not None and job.stored is not None:
        job.stored.set_result(True)
    elif job is not None:
        engine.runner.launch(job)
    # The event's id is known once it is published, after the commit.
    return Sent(message, started, queued.id)


async def regenerate(
    session: AsyncSession, engine: ChatEngine, conversation: Conversation, message_id: str
) -> StartedGeneration:
    """A new reply beside an assistant message (or to a user message), as a sibling."""
    target = await session.get(Message, message_id)
    if target is None or target.conversation_id != conversation.id:
        raise MessageNotFound()
    parent_id = target.parent_message_id if target.role == MessageRole.ASSISTANT else target.id
    if parent_id is None:
        raise ValidationFailed("this message has nothing to answer", field="message_id")
    plan = await plan_reply(session, engine.providers, engine.agents, conversation)
    # The new reply becomes the conversation's latest message, which the next post answers.
    tip = await lock_thread(session, conversation)
    started = await add_generation(
        session,
        conversation,
        parent_id=parent_id,
        endpoint=plan.endpoint,
        model=plan.model,
        worker_id=engine.runner.worker_id,
        sender=plan.sender,
        created_at=tip.next_time(),
    )
    job = reply_job(
        engine, conversation, plan, await branch(session, started.request_message_id), started, {}
    )
    _announce(session, engine, conversation, started, job)
    await session.commit()
    engine.runner.launch(job)
    return started


async def send_from_agent(
    engine: ChatEngine, context: ToolContext, conversation_id: str, text: str, respond: bool
) -> str:
    """The `send_message` tool: post into another conversation of the same owner."""
    if context.hops >= MAX_AGENT_HOPS:
        raise ToolError(f"agents may pass messages on at most {MAX_AGENT_HOPS} times in a row")
    async with engine.sessionmaker() as session:
        try:
            target = await get_owned_conversation(session, context.user_id, conversation_id)
            agent = await engine.agents.get(session, context.agent_id) if context.agent_id else None
            sent = await send_message(
                session,
                engine,
                target,
                role=MessageRole.EXTERNAL,
                # Labelled as people know the agent; metadata keeps its id.
                sender=agent.name if agent is not None else "agent",
                content=[{"type": "text", "text": text}],
                parent_message_id=None,
                metadata={
                    "source": "agent",
                    "agent_id": context.agent_id,
                    "from_conversation_id": context.conversation_id,
                    "hops": context.hops + 1,
                },
                respond=respond,
            )
        except AppError as exc:
            # The model reads this; a missing conversation and another user's look alike.
            raise ToolError(exc.detail) from exc
    line = f"posted message {sent.message.message_id} to conversation {conversation_id}"
    if sent.started is not None:
        line += f"; its reply is being generated (generation {sent.started.generation_id})"
    return line


def reply_job(
    engine: ChatEngine,
    conversation: Conversation,
    plan: ReplyPlan,
    history: Sequence[Turn],
    started: StartedGeneration | ReplyIds,
    metadata: dict[str, Any],
    *,
    api_key_id: str | None = None,
    caller_tools: CallerTools | None = None,
    listener: ReplyListener | None = None,
) -> Job:
    """The job that generates the reply `started` names, to the branch `history` (the
    messages from the root down to the one answered, as stored or about to be)."""
    request = build_request(
        history, model=plan.model, system=plan.system, parameters=plan.parameters
    )
    if caller_tools is not None:
        request = request.model_copy(
            update={"tools": list(caller_tools.tools), "tool_choice": caller_tools.choice}
        )
    agent, toolbox = plan.agent, engine.toolbox
    hops = metadata.get("hops")
    job = Job(
        generation_id=started.generation_id,
        user_id=conversation.user_id,
        conversation_id=conversation.id,
        message_id=started.response_id,
        endpoint=plan.endpoint,
        request=request,
        # Title the conversation after its first exchange.
        wants_title=not conversation.title and len(history) == 1,
        agent_id=agent.id if agent else None,
        max_steps=engine.max_steps,
        hops=hops if isinstance(hops, int) else 0,
        # The branch ends with the message answered: its callbacks need read nothing more.
        answers=_answered(started.request_message_id, history[-1]) if history else None,
        # Usage is the key's only when its message asked for the reply (a regeneration
        # is a person's doing, whoever sent the message answered).
        api_key_id=api_key_id,
        request_id=started.request_id,
        listener=listener,
    )
    if agent is not None and toolbox is not None and (agent.tools or agent.mcp_servers):
        job.tools_loader = functools.partial(_load_tools, engine, toolbox, agent, job)
    return job


def _answered(message_id: str, row: Turn) -> RequestRef:
    return RequestRef(message_id, row.api_key_id, row.meta or {})


async def _load_tools(engine: ChatEngine, toolbox: Toolbox, agent: AgentSpec, job: Job) -> ToolSet:
    """The agent's tools for this turn; MCP servers left out are recorded on the reply
    (`metadata.mcp_unavailable`) and announced, so the owner knows why tools are missing."""
    loaded = await toolbox.for_agent(agent)
    if loaded.unavailable:
        async with engine.sessionmaker() as session:
            publish_after_commit(
                session,
                engine.bus,
                job.user_id,
                MessageMcpUnavailable(
                    conversation_id=job.conversation_id,
                    message_id=job.message_id,
                    mcp_unavailable=loaded.unavailable,
                ),
            )
            reply = await session.get(Message, job.message_id)
            if reply is not None:
                reply.meta = {**(reply.meta or {}), "mcp_unavailable": loaded.unavailable}
            # Also when the reply is gone: the tabs are told either way, as before.
            await session.commit()
    return loaded.tools


def _announce(
    session: AsyncSession,
    engine: ChatEngine,
    conversation: Conversation,
    started: StartedGeneration,
    job: Job,
) -> None:
    """Queue the reply's placeholder and its generation.started; the caller commits them,
    then launches the job (so its first delta follows them)."""
    publish_after_commit(
        session,
        engine.bus,
        conversation.user_id,
        MessageCreated(
            conversation_id=conversation.id,
            message_id=started.response_id,
            message=started.response,
        ),
    )
    engine.runner.announce(session, job)
