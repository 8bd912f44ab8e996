"""Helpers for event bus tests: bounded reads, a spec-following SSE parser, sample events."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

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
    MessageToolCall,
    MessageToolResult,
    Reset,
)

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


def frame_of(envelope: Envelope) -> SSEMessage:
    """The single SSE message an envelope's frame holds."""
    (message,) = parse_sse(envelope.frame)
    return message


def delta(conversation_id: str, text: str, message_id: str = "m-1") -> MessageDelta:
    """A small event to publish."""
    return MessageDelta(conversation_id=conversation_id, message_id=message_id, delta=text)


def sample_events() -> list[BaseEvent]:
    """One event of every type, with awkward content (newlines, unicode, nesting)."""
    conversation = {"conversation_id": "c-1", "title": "Line one\nline two", "archived": False}
    message = {
        "message_id": "m-1",
        "conversation_id": "c-1",
        "text": "héllo\r\nworld\u2028",
        "content": [{"type": "text", "text": "héllo"}],
        "metadata": {"tokens": 3, "nested": {"list": [1, None, 2.5]}},
    }
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
        ConversationCreated(conversation_id="c-1", conversation=conversation),
        ConversationUpdated(conversation_id="c-1", conversation=conversation),
        ConversationDeleted(conversation_id="c-1"),
        GenerationStarted(conversation_id="c-1", generation_id="g-1", message_id="m-2"),
        GenerationAborted(
            conversation_id="c-1", generation_id="g-1", message_id="m-2", reason="user"
        ),
        Reset(reason="gap"),
    ]
