"""Helpers for event bus tests: buses of either kind, bounded reads, a spec-following SSE parser,
sample events."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from starlette.types import Message

from relaychat.realtime import EventBus, MemoryEventBus, RedisEventBus
from relaychat.realtime.bus import Envelope, Subscription
from relaychat.realtime.events import (
    BaseEvent,
    ConversationCreated,
    ConversationDeleted,
    ConversationUpdated,
    GenerationAborted,
    GenerationStarted,
    MessageCompleted,
    MessageCreated,
    MessageDelta,
    MessageFailed,
    MessageMcpUnavailable,
    MessageToolCall,
    MessageToolResult,
    Reset,
)
from relaychat.resources import ConversationOut, MessageView
from tests.support.backends import REDIS_PREFIX_ROOT

# Only a guard against a hung test; no assertion depends on how long anything takes.
DEADLOCK_GUARD = 10.0


async def take(subscription: Subscription, count: int) -> list[Envelope]:
    """The next `count` envelopes of `subscription`."""
    received: list[Envelope] = []
    async with asyncio.timeout(DEADLOCK_GUARD):
        while len(received) < count:
            received.append(await anext(subscription))
    return received


async def take_rest(subscription: Subscription) -> list[Envelope]:
    """Every envelope until `subscription` ends."""
    async with asyncio.timeout(DEADLOCK_GUARD):
        return [envelope async for envelope in subscription]


@dataclass
class SSEMessage:
    """One dispatched SSE event as a browser's EventSource would see it."""

    id: str | None
    event: str
    data: str
    retry: int | None = None


def parse_sse(stream: bytes) -> list[SSEMessage]:
    """Parse an SSE byte stream following the WHATWG algorithm (comments and BOM aside)."""
    text = stream.decode().replace("\r\n", "\n").replace("\r", "\n")
    messages: list[SSEMessage] = []
    data: list[str] = []
    event_id: str | None = None
    event = ""
    retry: int | None = None
    seen_fields = False
    # What follows the last line break is an incomplete line: not yet part of any message.
    for line in text.split("\n")[:-1]:
        if line == "":
            if data:
                messages.append(SSEMessage(event_id, event or "message", "\n".join(data), retry))
            elif seen_fields and retry is not None:
                messages.append(SSEMessage(event_id, "", "", retry))
            data, event, retry, seen_fields = [], "", None, False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        seen_fields = True
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            event_id = value
        elif name == "retry" and value.isdigit():
            retry = int(value)
    return messages


@dataclass
class FakeConnection:
    """The server's side of one HTTP request in memory: `receive` and `send` for an ASGI app.

    `receive` yields the (empty) GET request, then blocks until `disconnect()`.
    """

    messages: list[Message] = field(default_factory=list)
    _chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    _gone: asyncio.Event = field(default_factory=asyncio.Event)
    _requested: bool = False

    async def receive(self) -> Message:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body":
            if message.get("body"):
                self._chunks.put_nowait(message["body"])
            if not message.get("more_body", False):
                self._chunks.put_nowait(None)

    def disconnect(self) -> None:
        self._gone.set()

    async def chunk(self) -> bytes | None:
        """The next body chunk; None once the response is complete."""
        async with asyncio.timeout(DEADLOCK_GUARD):
            return await self._chunks.get()


def frame_of(envelope: Envelope) -> SSEMessage:
    """The single SSE message an envelope's frame holds."""
    (message,) = parse_sse(envelope.frame)
    return message


def delta(conversation_id: str, text: str, message_id: str = "m-1") -> MessageDelta:
    """A small event to publish."""
    return MessageDelta(conversation_id=conversation_id, message_id=message_id, delta=text)


def sample_events() -> list[BaseEvent]:
    """One event of every type, with awkward content (newlines, unicode, nesting)."""
    created = "2026-01-02T03:04:05.678901Z"
    conversation = ConversationOut.model_validate(
        {
            "conversation_id": "c-1",
            "title": "Line one\nline two",
            "endpoint": None,
            "model": None,
            "agent_id": None,
            "model_parameters": {"temperature": 0.5},
            "system_prompt": None,
            "archived": False,
            "unseen_external": 0,
            "created_at": created,
            "updated_at": created,
        }
    )
    message = MessageView.model_validate(
        {
            "message_id": "m-1",
            "conversation_id": "c-1",
            "parent_message_id": None,
            "role": "assistant",
            "sender": None,
            "text": "héllo\r\nworld\u2028",
            "content": [{"type": "text", "text": "héllo"}],
            "status": "complete",
            "error": None,
            "endpoint": None,
            "model": None,
            "finish_reason": None,
            "prompt_tokens": None,
            "completion_tokens": None,
            "metadata": {"tokens": 3, "nested": {"list": [1, None, 2.5]}},
            "created_at": created,
        }
    )
    return [
        MessageCreated(conversation_id="c-1", message_id="m-1", message=message),
        MessageDelta(conversation_id="c-1", message_id="m-1", delta="data: not a field\n\n"),
        MessageCompleted(conversation_id="c-1", message_id="m-1", message=message),
        MessageFailed(conversation_id="c-1", message_id="m-1", error="upstream_error"),
        MessageToolCall(
            conversation_id="c-1",
            message_id="m-1",
            tool_call={"id": "call-1", "name": "search", "arguments": {"q": "x"}},
        ),
        MessageToolResult(
            conversation_id="c-1",
            message_id="m-1",
            tool_result={"id": "call-1", "type": "text", "output": "found"},
        ),
        MessageMcpUnavailable(
            conversation_id="c-1",
            message_id="m-1",
            mcp_unavailable=[{"server": "github", "error": "MCP server github failed to start"}],
        ),
        ConversationCreated(conversation_id="c-1", conversation=conversation),
        ConversationUpdated(conversation_id="c-1", conversation=conversation),
        ConversationDeleted(conversation_id="c-1"),
        GenerationStarted(conversation_id="c-1", generation_id="g-1", message_id="m-2"),
        GenerationAborted(
            conversation_id="c-1", generation_id="g-1", message_id="m-2", reason="user"
        ),
        Reset(reason="gap"),
    ]


BusFactory = Callable[..., Awaitable[EventBus]]


_prefix_counter = itertools.count()


async def bus_factory(redis_url: str | None) -> AsyncIterator[BusFactory]:
    """Build started buses (all on one key prefix, so Redis ones act as workers of one app)."""
    prefix = f"{REDIS_PREFIX_ROOT}rt{next(_prefix_counter)}:"
    buses: list[EventBus] = []
    clients: list[Redis] = []

    async def make(**options: Any) -> EventBus:
        bus: EventBus
        if redis_url is None:
            bus = MemoryEventBus(**options)
        else:
            # A client per bus, as separate worker processes would have.
            client = Redis.from_url(redis_url)
            clients.append(client)
            bus = RedisEventBus(client, prefix, **options)
        buses.append(bus)
        await bus.start()
        return bus

    try:
        yield make
    finally:
        for bus in buses:
            await bus.close()
        if clients:
            keys = [key async for key in clients[0].scan_iter(match=f"{prefix}*")]
            if keys:
                await clients[0].delete(*keys)
        for client in clients:
            await client.aclose()
