"""A running generation and its loop: model call, tool calls, results fed back, repeat.

Without tools the loop is one model call. With tools it goes on until the model answers
without calling any, or `max_steps` model calls have been made.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from relaychat.domain.answering.listeners import ReplyListener
from relaychat.domain.limits import storable, storable_text
from relaychat.domain.messaging.content import flatten_text
from relaychat.domain.outbound.callbacks import RequestRef
from relaychat.domain.usage.counting import TokenCount, count_call, estimate_prompt, estimate_tokens
from relaychat.llm.base import ChatProvider
from relaychat.llm.tools.base import ToolContext, ToolSet
from relaychat.llm.types import (
    ChatMessage,
    ChatRequest,
    Finish,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallPart,
    ToolResultPart,
    Usage,
)
from relaychat.metrics import TIME_TO_FIRST_TOKEN
from relaychat.realtime.bus import EventBus
from relaychat.realtime.events import MessageDelta, MessageToolCall, MessageToolResult
from relaychat.statuses import StopReason

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from relaychat.resources import MessageView


class EndInWrite(Protocol):
    """A completed reply's end, written by the transaction that writes its rows."""

    def reply_columns(self) -> dict[str, Any]:
        """The reply's columns as it ended, over those of its placeholder."""
        ...

    def generation_columns(self) -> dict[str, Any]:
        """The generation's columns as it ended, over those of a running one."""
        ...

    async def written(self, session: AsyncSession, reply: MessageView) -> None:
        """The rest of the end (usage, callbacks, events), once `reply` is inserted."""
        ...


@dataclass
class Job:
    """A generation this process is running, and what it has produced so far."""

    generation_id: str
    user_id: str
    conversation_id: str
    message_id: str
    endpoint: str
    request: ChatRequest
    wants_title: bool
    agent_id: str | None = None
    tools: ToolSet | None = None
    max_steps: int = 10
    hops: int = 0
    # Loads the tools inside the run (MCP servers may take a while to start).
    tools_loader: Callable[[], Awaitable[ToolSet]] | None = None
    # The message it answers, as the reply's callbacks need it; read from its row at the
    # end when not known (a job rebuilt without it).
    answers: RequestRef | None = None
    # The reply as typed parts, in the order they happened: text, tool_call, tool_result.
    parts: list[dict[str, Any]] = field(default_factory=list)
    # A copy of the parts as last written to the database (None: never written).
    saved_parts: list[dict[str, Any]] | None = None
    started_at: float = field(default_factory=time.time)
    first_token_at: float | None = None
    stop_reason: StopReason | None = None  # set when stopped on purpose: aborted or shutdown
    # The key whose message asked for this reply (its id, or `env:…`), for the usage row.
    api_key_id: str | None = None
    # The request that asked for it (`generations.request_id`): the run logs under it.
    request_id: str | None = None
    # Tokens of the model calls that ended, summed; and the call under way with its text
    # so far, so a reply stopped mid-call still counts what it was sent and produced.
    usage: TokenCount = field(default_factory=TokenCount)
    call_request: ChatRequest | None = None
    call_output: list[str] = field(default_factory=list)
    # The request in this process that asked for the reply and streams it back (the
    # OpenAI-compatible API): handed every piece as it comes, and the end once committed.
    listener: ReplyListener | None = None
    # Set when the job was launched before its rows were committed, so the upstream call
    # starts while they are written: the commit's outcome (True: stored). Until then
    # nothing of the reply goes to the bus or the database, only to the listener.
    stored: asyncio.Future[bool] | None = None
    # Set once the run needs its rows (see `wait_stored`): a launcher may hold its writes
    # until then, so that they do not share the CPU with the reply's first token.
    rows_needed: asyncio.Event = field(default_factory=asyncio.Event)
    # Set by the runner when the run completed before its rows' commit: the reply's end,
    # for the transaction writing the rows, if it has not inserted them yet, to insert
    # them as they end and write the rest of the end with them (`send_message`: one
    # transaction instead of two for a short reply).
    end_in_write: EndInWrite | None = None

    async def wait_stored(self) -> bool:
        """Whether the reply's rows are committed; at once for a job launched after it."""
        if self.stored is None:
            return True
        self.rows_needed.set()
        # Shielded: a cancelled waiter must not cancel the outcome the launcher sets.
        return await asyncio.shield(self.stored)

    @property
    def text(self) -> str:
        return flatten_text(self.parts)

    def add_text(self, delta: str) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.time()
            TIME_TO_FIRST_TOKEN.labels(self.endpoint).observe(self.first_token_at - self.started_at)
        if self.parts and self.parts[-1]["type"] == "text":
            self.parts[-1]["text"] += delta
        else:
            self.parts.append({"type": "text", "text": delta})

    def dirty(self) -> bool:
        """Whether the parts changed since the last save."""
        return self.parts != self.saved_parts

    def snapshot(self) -> list[dict[str, Any]]:
        """A copy of the parts to write: text keeps arriving while the write is under way."""
        return copy.deepcopy(self.parts)

    def mark_saved(self, written: list[dict[str, Any]]) -> None:
        """Record `written` (a snapshot) as stored, once its transaction has committed."""
        self.saved_parts = written

    def tokens(self) -> TokenCount:
        """Every call's tokens; a call cut short counts, estimated, if it produced anything."""
        if self.call_request is None or not self.call_output:
            return self.usage
        cut = TokenCount(
            estimate_prompt(self.call_request),
            estimate_tokens("".join(self.call_output)),
            estimated=True,
        )
        return self.usage + cut

    def context(self) -> ToolContext:
        return ToolContext(
            user_id=self.user_id,
            conversation_id=self.conversation_id,
            generation_id=self.generation_id,
            agent_id=self.agent_id,
            hops=self.hops,
        )


# On a bus that publishes through I/O (Redis), the deltas of every reply streaming in this
# process go out together, at most this often: text arriving in between goes out as one
# delta per reply. A publish costs a round trip and CPU across publisher and receivers for
# every batch and every event in it, and models stream tokens a few ms apart; 60 updates a
# second are more than a reader sees. A reply's first delta goes at once.
DELTA_INTERVAL = 1 / 60


class _DeltaBatcher:
    """The replies with text to publish on one I/O bus, published together by one task.

    A task and a round trip of its own per reply cost two task switches, a future and a
    timer per token; with hundreds of replies streaming that was a good part of the CPU a
    token cost. Here each tick publishes the pending text of every reply in one
    `publish_many` (one script call per user on Redis).
    """

    def __init__(self, bus: EventBus) -> None:
        # Weak: `_batchers` maps the bus to this, and must not keep it alive (tests make many).
        self._bus = weakref.ref(bus)
        self.waiting: dict[DeltaPublisher, None] = {}  # insertion-ordered set
        self._hurry = asyncio.Event()
        self._next_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def add(self, publisher: DeltaPublisher, *, hurry: bool) -> None:
        """Publish the text of `publisher` at the next tick (`hurry`: at once)."""
        self.waiting[publisher] = None
        if hurry:
            self._hurry.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="deltas")

    def hurry(self) -> None:
        self._hurry.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[DeltaPublisher] = []
        try:
            while self.waiting:
                wait = self._next_at - loop.time()
                if wait > 0 and not self._hurry.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._hurry.wait()
                self._hurry.clear()
                batch = list(self.waiting)
                self.waiting.clear()
                self._next_at = loop.time() + DELTA_INTERVAL
                events = [publisher.take() for publisher in batch]
                bus = self._bus()
                try:
                    if bus is None:
                        raise RuntimeError("the event bus is gone")
                    # Direct, not publish_after_commit: streamed tokens belong to no
                    # transaction (the text is saved later, by the runner's progress saves).
                    await bus.publish_many(events)
                except Exception as exc:
                    for publisher in batch:
                        publisher.failed(exc)
                else:
                    for publisher in batch:
                        publisher.sent()
                batch = []
        finally:
            self._task = None
            # Cancelled (the loop is closing): nobody may wait for these any more.
            for publisher in [*batch, *self.waiting]:
                publisher.failed(RuntimeError("delta publishing stopped"))
            self.waiting.clear()


_batchers: weakref.WeakKeyDictionary[EventBus, _DeltaBatcher] = weakref.WeakKeyDictionary()


def _batcher(bus: EventBus) -> _DeltaBatcher:
    batcher = _batchers.get(bus)
    if batcher is None:
        batcher = _batchers[bus] = _DeltaBatcher(bus)
    return batcher


class DeltaPublisher:
    """Sends a reply's text deltas in order: at once on a bus that needs no I/O to publish,
    else through the bus's `_DeltaBatcher`, so the upstream stream is never paused by a
    slow publish; text that arrives meanwhile, or within `DELTA_INTERVAL` of the last
    batch, goes out as one delta (all at once when the reply ends: `flush`). Until the
    reply's rows are committed (`job.stored`) its text waits, and is dropped if they
    never are: its deltas would name no message."""

    def __init__(self, job: Job, bus: EventBus) -> None:
        self.job = job
        self.bus = bus
        self._pending: list[str] = []
        self._queued = False  # in the batcher's `waiting`
        self._published = False  # a delta went out: the next ones wait for the interval
        self._waits_commit = False  # a callback on `job.stored` is registered
        self._idle = asyncio.Event()
        self._idle.set()
        self._error: Exception | None = None
        self._closed = False

    def push(self, text: str) -> None:
        if self._closed or self._error is not None:
            return  # the reply is over, or its deltas cannot go out (flush raises)
        stored = self.job.stored
        if stored is not None and not stored.done():
            # Held until the rows are committed; a launcher holding their writes is not
            # hurried (`Job.rows_needed`): a reply that ends first is written once, whole.
            self._pending.append(text)
            self._idle.clear()
            if not self._waits_commit:
                self._waits_commit = True
                stored.add_done_callback(self._on_stored)
            return
        if stored is not None and (stored.cancelled() or not stored.result()):
            return
        # A bus that delivers without I/O (in-process) is not slow: no batch, no wake-up.
        if not self._pending and self._publish_now(text):
            return
        self._pending.append(text)
        self._idle.clear()
        self._queue()

    async def flush(self) -> None:
        """Wait until every pushed delta was published (before any later event)."""
        if not self._idle.is_set():
            if self._queued:
                _batcher(self.bus).hurry()  # no interval before the last delta
            await self._idle.wait()
        if self._error is not None:
            raise self._error  # surface a publishing error

    async def close(self) -> None:
        """Drop what was not published yet; nothing is published after this."""
        self._closed = True
        self._pending.clear()
        if self._queued:
            self._queued = False
            _batcher(self.bus).waiting.pop(self, None)
        if self._waits_commit and self.job.stored is not None:
            self.job.stored.remove_done_callback(self._on_stored)
        self._idle.set()

    # -- for the batcher -------------------------------------------------------------------

    def take(self) -> tuple[str, MessageDelta]:
        """The pending text as one delta to publish now."""
        self._queued = False
        self._published = True
        text = "".join(self._pending)
        self._pending.clear()
        return self.job.user_id, self._delta(text)

    def sent(self) -> None:
        if not self._queued:
            self._idle.set()

    def failed(self, exc: Exception) -> None:
        self._error = exc
        self._pending.clear()
        self._queued = False
        self._idle.set()

    # -- internals -------------------------------------------------------------------------

    def _queue(self) -> None:
        if not self._queued:
            self._queued = True
            _batcher(self.bus).add(self, hurry=not self._published)

    def _on_stored(self, stored: asyncio.Future[bool]) -> None:
        self._waits_commit = False
        if self._closed:
            return
        if stored.cancelled() or not stored.result():
            self._pending.clear()
            self._idle.set()
            return
        text = "".join(self._pending)
        self._pending.clear()
        if self._publish_now(text):
            # In-process bus: what waited for the commit is out, the rest goes at once.
            self._idle.set()
            return
        self._pending.append(text)
        self._queue()

    def _publish_now(self, text: str) -> bool:
        """Publish `text` at once if the bus can (in-process); False if it needs I/O."""
        return self.bus.publish_nowait(self.job.user_id, self._delta(text)) is not None

    def _delta(self, text: str) -> MessageDelta:
        job = self.job
        return MessageDelta(
            conversation_id=job.conversation_id, message_id=job.message_id, delta=text
        )


@dataclass
class LoopResult:
    usage: Usage | None
    finish: Finish | None


async def run_loop(job: Job, provider: ChatProvider, bus: EventBus) -> LoopResult:
    """Drive the model (and tools) to a final answer, publishing as it goes."""
    request = job.request
    if job.tools:
        request = request.model_copy(update={"tools": job.tools.specs()})
    deltas = DeltaPublisher(job, bus)
    try:
        return await _steps(job, provider, bus, request, deltas)
    except Exception:
        # The text streamed so far reaches the tabs before the failure does.
        with contextlib.suppress(Exception):
            await deltas.flush()
        raise
    finally:
        await deltas.close()


async def _steps(
    job: Job, provider: ChatProvider, bus: EventBus, request: ChatRequest, deltas: DeltaPublisher
) -> LoopResult:
    usage: Usage | None = None
    for _ in range(max(1, job.max_steps)):
        parts_before = len(job.parts)
        calls, step_usage, finish = await _model_step(job, provider, request, deltas)
        usage = _add_usage(usage, step_usage)
        if not calls and job.stored is not None and not job.stored.done():
            # Ended before its rows' commit: its end waits for that (or is written with
            # them), and says the whole text; the deltas held back are not sent.
            return LoopResult(usage, finish)
        # Tool calls and results are published and tools may write: after the commit.
        await job.wait_stored()
        await deltas.flush()  # every delta of this step goes out before what follows it
        if not calls:
            return LoopResult(usage, finish)
        if not job.tools:
            # Tools the caller passed (the OpenAI-compatible API): the reply ends with the
            # calls, which the caller runs and answers in its next request.
            for call in calls:
                await _record_call(job, call, bus)
            return LoopResult(usage, finish)
        step_text = "".join(p["text"] for p in job.parts[parts_before:] if p["type"] == "text")
        results = [await _run_tool(job, call, bus) for call in calls]
        assistant: list[Any] = [TextPart(text=step_text)] if step_text else []
        assistant += [
            ToolCallPart(id=c.id, name=c.name, arguments=c.arguments or {}, signature=c.signature)
            for c in calls
        ]
        request = request.model_copy(
            update={
                "messages": [
                    *request.messages,
                    ChatMessage(role="assistant", content=assistant),
                    ChatMessage(role="tool", content=results),
                ]
            }
        )
    # The model still wanted tools when the steps ran out: stop with what we have.
    return LoopResult(usage, Finish(reason="length", raw_reason="max_steps"))


async def _model_step(
    job: Job, provider: ChatProvider, request: ChatRequest, deltas: DeltaPublisher
) -> tuple[list[ToolCall], Usage | None, Finish | None]:
    calls: list[ToolCall] = []
    usage: Usage | None = None
    finish: Finish | None = None
    job.call_request, job.call_output = request, []
    stream = provider.stream(request)
    try:
        async for event in stream:
            if isinstance(event, TextDelta) and event.text:
                # A model's text is made storable as it arrives, so what the tabs see is
                # what is saved, on both databases.
                text = storable_text(event.text)
                job.add_text(text)
                job.call_output.append(text)
                # The caller's listener first: woken before whatever the deltas wake, it
                # writes the text before they take the loop.
                if job.listener is not None:
                    job.listener.text(text)
                deltas.push(text)
            elif isinstance(event, ToolCall):
                calls.append(event)
            elif isinstance(event, Usage):
                usage = event
            elif isinstance(event, Finish):
                finish = event
    finally:
        # Close the upstream call now (on abort too), not when the generator is collected.
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    output = "".join(job.call_output) + "".join(call.raw_arguments for call in calls)
    job.usage += count_call(usage, request, output)
    job.call_request = None
    return calls, usage, finish


async def _record_call(job: Job, call: ToolCall, bus: EventBus) -> dict[str, Any]:
    """Add the call to the reply's parts and tell the owner's tabs about it."""
    call_part: dict[str, Any] = storable(
        {
            "type": "tool_call",
            "id": call.id,
            "name": call.name,
            "arguments": call.arguments if call.arguments is not None else call.raw_arguments,
        }
    )
    if call.signature:  # Gemini wants its signature back with the call in the history
        call_part["signature"] = call.signature
    job.parts.append(call_part)
    if job.listener is not None:
        job.listener.part(call_part)
    # Direct, like the deltas: tool calls and results stream while the reply is generated,
    # before any transaction stores them.
    await bus.publish(
        job.user_id,
        MessageToolCall(
            conversation_id=job.conversation_id, message_id=job.message_id, tool_call=call_part
        ),
    )
    return call_part


async def _run_tool(job: Job, call: ToolCall, bus: EventBus) -> ToolResultPart:
    assert job.tools is not None
    call_part = await _record_call(job, call, bus)
    outcome = await job.tools.call(call.name, call.arguments, job.context())
    content = storable_text(outcome.content)  # a tool's output is as unchecked as a model's
    result_part = {
        "type": "tool_result",
        "tool_call_id": call_part["id"],
        "name": call_part["name"],
        "content": content,
        "is_error": outcome.is_error,
    }
    job.parts.append(result_part)
    if job.listener is not None:
        job.listener.part(result_part)
    await bus.publish(
        job.user_id,
        MessageToolResult(
            conversation_id=job.conversation_id, message_id=job.message_id, tool_result=result_part
        ),
    )
    return ToolResultPart(tool_call_id=call.id, content=content, is_error=outcome.is_error)


def _add_usage(total: Usage | None, step: Usage | None) -> Usage | None:
    if step is None:
        return total
    if total is None:
        return step
    return Usage(
        prompt_tokens=total.prompt_tokens + step.prompt_tokens,
        completion_tokens=total.completion_tokens + step.completion_tokens,
    )
