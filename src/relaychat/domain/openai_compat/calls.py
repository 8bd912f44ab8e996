"""One call of the OpenAI-compatible API: stored as a conversation turn and answered by the
generation runner, or (with `store: false`) answered by the provider and stored nowhere.

Why the durable generation path and not the adapter called from the request: a stored call
is a conversation turn like any other, so it is stored, streamed to the owner's open tabs
as it is written, kept as `unfinished` when the worker stops, abortable from any worker,
titled, and answered by an agent with its tools exactly as in the UI, all by the code that
already does this for people's and external messages (`chat.send_message`, the runner).
The runner hands the reply's pieces to the call in-process as it generates them
(`follow_reply`; see answering/listeners.py for why not the owner's event log), while the
owner's tabs get their events from the bus; a caller that hangs up does not lose the reply.
A call with `store: false` must leave no row, and a generation is rows, so only it goes to
the provider directly (`stream_unstored`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat import logs
from relaychat.domain.agent.agents import AGENTS_ENDPOINT
from relaychat.domain.answering.agent_loop import Job
from relaychat.domain.answering.generations import Providers
from relaychat.domain.answering.listeners import ReplyEnded, ReplyListener
from relaychat.domain.answering.replies import endpoint_plan, plan_reply
from relaychat.domain.ids import new_id
from relaychat.domain.messaging.chat import (
    CallerTools,
    ChatEngine,
    ReplyIds,
    Sent,
    checked_text,
    reply_job,
    send_message,
)
from relaychat.domain.messaging.content import flatten_text
from relaychat.domain.messaging.context import generation_options
from relaychat.domain.messaging.conversations import (
    get_owned_conversation,
    publish_created,
    stage_conversation,
)
from relaychat.domain.messaging.messages import ThreadTip
from relaychat.domain.messaging.titles import MAX_TITLE_CHARS
from relaychat.domain.openai_compat.callers import ApiCaller, UnsupportedParameter
from relaychat.domain.openai_compat.catalog import Target, owner_name, owner_of
from relaychat.errors import BadRequest, ErrorCode, NotFound
from relaychat.llm.base import ChatProvider
from relaychat.llm.errors import ProviderError
from relaychat.llm.types import ChatMessage, ChatRequest, Finish, TextDelta, ToolCall, Usage
from relaychat.statuses import MessageRole, MessageStatus
from relaychat.storage.models import Conversation, Message

logger = logging.getLogger(__name__)

# How long a new conversation's rows may wait for its reply to need them (`_write_new`).
HOLD_WRITES = 0.25


class ResponseNotFound(NotFound):
    code = ErrorCode.RESPONSE_NOT_FOUND
    title = "No such response"


# `metadata.via` of every message a call stores: the UI and webhooks tell API turns apart.
VIA = "openai-api"


@dataclass(frozen=True)
class CallTurn:
    """A message of the call: a person's or an earlier reply, as typed content parts."""

    role: Literal["user", "assistant", "tool"]
    content: list[dict[str, Any]]


@dataclass(frozen=True)
class Call:
    """What a call asks for, checked: the target, the turns (the last one a person's or
    tool results), the generation parameters (`temperature`, `top_p`, `max_tokens`, `stop`)
    and the tools the caller runs itself."""

    target: Target
    turns: Sequence[CallTurn]
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    conversation_id: str | None = None
    # The message the first turn answers (a Responses API `previous_response_id`, in
    # `conversation_id`); None: the conversation's latest.
    parent_message_id: str | None = None
    tools: CallerTools | None = None


@dataclass(frozen=True)
class StartedCall:
    """A stored call whose reply is being generated."""

    owner_id: str
    conversation_id: str
    request_message_id: str
    response_message_id: str
    generation_id: str
    # The reply's pieces as the runner generates them.
    listener: ReplyListener


@dataclass(frozen=True)
class ToolStep:
    """A tool an agent ran on the server while answering: the call and its result."""

    id: str
    name: str
    arguments: Any  # the model's arguments: an object, or the text it sent when not JSON
    output: str
    is_error: bool


@dataclass(frozen=True)
class ReplyEnd:
    """How the reply ended; `error` (a stable code) and `detail` when it failed."""

    finish_reason: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    text: str | None = None
    error: str | None = None
    detail: str | None = None
    # Calls of the caller's tools the reply ends with: `{id, name, arguments}`.
    tool_calls: tuple[dict[str, Any], ...] = ()
    # The tools the agent ran on the server, in order.
    tool_steps: tuple[ToolStep, ...] = ()


# A reply as it comes: text deltas (and, when asked, each tool step as its result comes
# in), then one ReplyEnd.
ReplyPiece = str | ToolStep | ReplyEnd


_ROLES = {"user": MessageRole.USER, "assistant": MessageRole.ASSISTANT, "tool": MessageRole.TOOL}


def _sender(turn: CallTurn, owner_name: str, target_name: str) -> str:
    if turn.role == "user":
        return owner_name
    return target_name if turn.role == "assistant" else "tool"


def unanswered_calls(content: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """The reply's calls of the caller's tools: those without a result in the reply (an
    agent's own calls have theirs there)."""
    answered = {p.get("tool_call_id") for p in content if p.get("type") == "tool_result"}
    return tuple(
        {"id": p["id"], "name": p["name"], "arguments": p.get("arguments")}
        for p in content
        if p.get("type") == "tool_call" and p.get("id") not in answered
    )


def _step(call: dict[str, Any], result: dict[str, Any]) -> ToolStep:
    return ToolStep(
        id=call["id"],
        name=call["name"],
        arguments=call.get("arguments"),
        output=str(result.get("content", "")),
        is_error=bool(result.get("is_error")),
    )


def tool_steps(content: Sequence[dict[str, Any]]) -> tuple[ToolStep, ...]:
    """The reply's tool steps: its tool calls that have a result (the agent's own), paired
    with it, in the order they were called."""
    results = {p.get("tool_call_id"): p for p in content if p.get("type") == "tool_result"}
    return tuple(
        _step(p, results[p["id"]])
        for p in content
        if p.get("type") == "tool_call" and p.get("id") in results
    )


def _conversation_fields(call: Call) -> dict[str, Any]:
    target = call.target
    fields: dict[str, Any] = {
        "endpoint": AGENTS_ENDPOINT if target.agent_id else target.endpoint,
        "model": target.model,
        "agent_id": target.agent_id,
        "model_parameters": {k: v for k, v in call.parameters.items() if v is not None},
    }
    if call.system:
        fields["system_prompt"] = call.system
    return fields


def _new_conversation_fields(call: Call) -> dict[str, Any]:
    """A new conversation's fields: the call's, and a title of its first message's words.

    The UI has a model write a title after the first reply; a call is titled thus instead,
    so that it costs the caller exactly the model call it asked for (and nothing more runs
    after its reply). A call whose first message has no text is titled by the model.
    """
    first = next((t for t in call.turns if t.role == "user"), None)
    words = " ".join(flatten_text(first.content).split()) if first else ""
    if len(words) > MAX_TITLE_CHARS:
        words = words[: MAX_TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return {**_conversation_fields(call), "title": words or None}


def new_turns(turns: Sequence[CallTurn]) -> Sequence[CallTurn]:
    """The turns a continued conversation has not seen: those after the last reply (SDKs
    send the whole history each time; the stored one is what the model is given)."""
    last_reply = max((i for i, t in enumerate(turns) if t.role == "assistant"), default=-1)
    return turns[last_reply + 1 :]


def _check_turns(turns: Sequence[CallTurn]) -> None:
    if not turns or turns[-1].role == "assistant":
        raise BadRequest(
            "the last message must be the user's or tool results, after the "
            "conversation's last reply",
            field="messages",
        )


async def start_call(engine: ChatEngine, caller: ApiCaller, call: Call) -> StartedCall:
    """Store the call's turns in a new conversation of the caller's owner (or the owned one
    it continues) and start the reply. Everything is checked before the first write."""
    caller.check_respond()
    if call.conversation_id is None:
        return await _start_new(engine, caller, call)
    # Continued: `turns` are those it has not seen.
    async with engine.sessionmaker() as session:
        owner = await owner_of(session, caller)
        await caller.check_budget(session)
        caller.check_conversation(call.conversation_id)
        conversation = await get_owned_conversation(session, owner.id, call.conversation_id)
        # The conversation goes on with the model and parameters of its latest call.
        for name, value in _conversation_fields(call).items():
            setattr(conversation, name, value)
        _check_turns(call.turns)
        listener = ReplyListener()
        sent = await _send_turns(
            session, engine, caller, call, conversation, owner.name, listener=listener
        )
        assert sent.started is not None  # respond=True always starts one
        return StartedCall(
            owner_id=owner.id,
            conversation_id=conversation.id,
            request_message_id=sent.message.message_id,
            response_message_id=sent.started.response_id,
            generation_id=sent.started.generation_id,
            listener=listener,
        )


async def _send_turns(
    session: AsyncSession,
    engine: ChatEngine,
    caller: ApiCaller,
    call: Call,
    conversation: Conversation,
    owner_name: str,
    *,
    listener: ReplyListener | None = None,
    launched: Job | None = None,
) -> Sent:
    """Store the call's turns in `conversation`, the last one answered: by a reply started
    here for `listener`, or by the job `launched` already runs (whose conversation is new
    in this transaction: its thread is the turns written here, with no lock to take)."""
    sent = None
    parent = call.parent_message_id
    alone = ThreadTip(None, None) if launched is not None else None
    for index, turn in enumerate(call.turns):
        last = index == len(call.turns) - 1
        sent = await send_message(
            session,
            engine,
            conversation,
            role=_ROLES[turn.role],
            sender=_sender(turn, owner_name, call.target.name),
            content=turn.content,
            parent_message_id=parent,
            metadata={"via": VIA},
            respond=last,
            api_key_id=caller.key_id,
            caller_tools=call.tools if last and launched is None else None,
            listener=listener if last else None,
            launched=launched if last else None,
            alone=alone,
        )
        parent = sent.message.message_id
        if alone is not None:
            alone = ThreadTip(parent, sent.message.created_at)
    assert sent is not None
    return sent


@dataclass(frozen=True)
class _Unwritten:
    """A turn of a new conversation as the model's request reads it (context.Turn), before
    its row is written. `sender` is None: a request names only external senders."""

    role: str
    content: list[dict[str, Any]]
    api_key_id: str | None
    status: str = MessageStatus.COMPLETE
    sender: str | None = None
    meta: dict[str, Any] = field(default_factory=lambda: {"via": VIA})


async def _start_new(engine: ChatEngine, caller: ApiCaller, call: Call) -> StartedCall:
    """A call that opens a conversation: its reply is launched before anything is written.

    A new conversation's history is the call's own turns, so the model's request needs no
    row: the upstream call starts at once, and the rows are written beside it (the runner
    keeps the reply off the bus and out of the database until they are committed, and tells
    the caller if they never are). Every check that can refuse the call runs first.
    """
    _check_turns(call.turns)
    for turn in call.turns:
        checked_text(turn.content)
    conversation_id = new_id()
    caller.check_conversation(conversation_id)
    fields = _new_conversation_fields(call)
    # The conversation the plan is made for is the one about to be written.
    conversation = Conversation(id=conversation_id, user_id=caller.owner_id, **fields)
    if caller.has_budget or call.target.agent_id is not None:
        async with engine.sessionmaker() as session:
            await caller.check_budget(session)
            plan = await plan_reply(session, engine.providers, engine.agents, conversation)
    else:  # nothing to read: no session opened on the way to the first token
        plan = endpoint_plan(engine.providers, conversation)
    history = [_Unwritten(_ROLES[t.role], t.content, caller.key_id) for t in call.turns]
    ids = ReplyIds(new_id(), new_id(), new_id(), logs.current_request_id())
    listener = ReplyListener()
    job = reply_job(
        engine,
        conversation,
        plan,
        history,
        ids,
        {"via": VIA},
        api_key_id=caller.key_id,
        caller_tools=call.tools,
        listener=listener,
    )
    job.stored = asyncio.get_running_loop().create_future()
    engine.runner.launch_writing(job, _write_new(engine, caller, call, fields, job))
    return StartedCall(
        owner_id=caller.owner_id,
        conversation_id=conversation_id,
        request_message_id=ids.request_message_id,
        response_message_id=ids.response_id,
        generation_id=ids.generation_id,
        listener=listener,
    )


async def _write_new(
    engine: ChatEngine, caller: ApiCaller, call: Call, fields: dict[str, Any], job: Job
) -> None:
    """Write a new conversation (its `fields`) and the call's turns, whose reply is already
    running; if that fails, the reply is dropped unwritten and its caller told.

    The writes wait until the run needs the rows (to load an agent's tools, to publish a
    step's tool calls, to end) or `HOLD_WRITES` has passed: the reply is relayed without
    sharing the CPU with them, and a longer one is soon shown in the owner's tabs. A reply
    that ended first is written whole, its end in the same transaction (`send_message`).
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(HOLD_WRITES):
            await job.rows_needed.wait()
    try:
        async with engine.sessionmaker() as session:
            name = await owner_name(session, caller)
            conversation = await stage_conversation(
                session,
                caller.owner_id,
                conversation_id=job.conversation_id,
                fields=fields,
                api_key_id=caller.key_id,
                fresh=True,  # made by `_start_new`
            )
            publish_created(session, engine.bus, conversation)
            await _send_turns(session, engine, caller, call, conversation, name, launched=job)
    except Exception:
        logger.exception("the call's conversation %s could not be stored", job.conversation_id)
        _drop_unwritten(engine, job)
    except BaseException:
        _drop_unwritten(engine, job)
        raise


def _drop_unwritten(engine: ChatEngine, job: Job) -> None:
    """Stop a launched reply whose rows were not written, telling its caller why (first:
    once discarded, the job would close the listener without a reason)."""
    assert job.listener is not None
    job.listener.end(
        ReplyEnded(None, error=ErrorCode.INTERNAL_ERROR, detail="the call could not be stored")
    )
    engine.runner.discard(job)


async def owned_reply(session: AsyncSession, owner_id: str, message_id: str) -> Message:
    """A reply in one of the owner's conversations; 404 `response_not_found` otherwise."""
    reply = await session.scalar(
        select(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Message.id == message_id,
            Message.role == MessageRole.ASSISTANT,
            Conversation.user_id == owner_id,
        )
    )
    if reply is None:
        raise ResponseNotFound(f"no response {message_id!r}")
    return reply


async def follow_reply(started: StartedCall, *, steps: bool = False) -> AsyncIterator[ReplyPiece]:
    """The reply's text as it is generated, then how it ended (once committed); with
    `steps`, each tool the agent ran as its result comes in."""
    calls: dict[str, dict[str, Any]] = {}
    async for piece in started.listener:
        if isinstance(piece, str):
            yield piece
        elif isinstance(piece, ReplyEnded):
            yield _end_of(piece)
            return
        elif not steps:
            continue
        elif piece.get("type") == "tool_call":
            calls[piece["id"]] = piece
        elif piece.get("type") == "tool_result":
            asked = calls.pop(piece.get("tool_call_id", ""), None)
            if asked is not None:
                yield _step(asked, piece)
    yield ReplyEnd("error", error="interrupted", detail="the reply stopped without an end")


def _end_of(ended: ReplyEnded) -> ReplyEnd:
    reply = ended.message
    if reply is None and ended.error is not None:  # never stored (see `_write_new`)
        return ReplyEnd("error", error=ended.error, detail=ended.detail)
    if reply is None:
        return ReplyEnd("error", error="interrupted", detail="the reply was ended elsewhere")
    if reply.status == MessageStatus.ERROR:
        return ReplyEnd("error", error=ended.error, detail=ended.detail)
    return ReplyEnd(
        finish_reason=reply.finish_reason or "stop",
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        text=reply.text,
        error=ended.error,  # `unfinished` when it was stopped early
        detail=ended.detail,
        tool_calls=unanswered_calls(reply.content),
        tool_steps=tool_steps(reply.content),
    )


class Begun:
    """A reply's pieces, the first of which was asked for already (`begin`)."""

    __slots__ = ("_first", "_rest")

    def __init__(self, first: asyncio.Future[ReplyPiece], rest: AsyncIterator[ReplyPiece]):
        self._first: asyncio.Future[ReplyPiece] | None = first
        self._rest = rest

    def __aiter__(self) -> Begun:
        return self

    async def __anext__(self) -> ReplyPiece:
        first = self._first
        if first is not None:
            self._first = None
            return await first
        return await anext(self._rest)


async def begin(pieces: AsyncIterator[ReplyPiece]) -> Begun:
    """`pieces`, with the request to the upstream sent before the caller's answer starts.

    A stream's answer (its head, its first chunk) would otherwise be written first: the
    runner's task, launched before, or the first step of `pieces` (a call that stores
    nothing asks the provider there) runs only once this task waits. So the first piece
    is asked for now, and the loop turned twice: once for each to go as far as its
    upstream request, once more for that request's body to be written (aiohttp writes a
    body in a task of its own before Python 3.12, which would run after our answer's head:
    ~0.2 ms later on the upstream, bench.openai_api).
    """
    first = asyncio.ensure_future(anext(pieces))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return Begun(first, pieces)


async def whole_reply(pieces: AsyncIterator[ReplyPiece]) -> ReplyEnd:
    """Read a reply to its end: how it ended, with its whole text."""
    text: list[str] = []
    async for piece in pieces:
        if isinstance(piece, str):
            text.append(piece)
        elif isinstance(piece, ToolStep):
            continue  # the end has them all
        elif piece.text is None:
            return dataclasses.replace(piece, text="".join(text))
        else:
            return piece
    return ReplyEnd("error", error="interrupted", detail="the reply ended without an end")


def stream_unstored(
    providers: Providers, caller: ApiCaller, call: Call
) -> AsyncIterator[ReplyPiece]:
    """The reply straight from the endpoint's provider, for a call that stores nothing;
    checked here, before the caller starts reading."""
    caller.check_unstored()
    target = call.target
    if target.agent_id is not None or target.model is None:
        raise UnsupportedParameter(
            "`store: false` is for endpoint models; an agent's reply is always stored",
            field="store",
        )
    request = ChatRequest(
        model=target.model,
        system=call.system,
        messages=[ChatMessage(role=t.role, content=t.content) for t in call.turns],
        tools=list(call.tools.tools) if call.tools else [],
        tool_choice=call.tools.choice if call.tools else None,
        **generation_options(call.parameters),
    )
    return _relay(providers.provider(target.endpoint), request)


async def _relay(provider: ChatProvider, request: ChatRequest) -> AsyncIterator[ReplyPiece]:
    usage: Usage | None = None
    finish: Finish | None = None
    calls: list[dict[str, Any]] = []
    try:
        async with contextlib.aclosing(provider.stream(request)) as events:  # type: ignore[type-var]
            async for event in events:
                if isinstance(event, TextDelta) and event.text:
                    yield event.text
                elif isinstance(event, ToolCall):
                    arguments = event.arguments if event.arguments is not None else {}
                    calls.append({"id": event.id, "name": event.name, "arguments": arguments})
                elif isinstance(event, Usage):
                    usage = event
                elif isinstance(event, Finish):
                    finish = event
    except ProviderError as exc:
        yield ReplyEnd("error", error=exc.code, detail=exc.detail)
        return
    yield ReplyEnd(
        finish.reason if finish else "stop",
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        tool_calls=tuple(calls),
    )
