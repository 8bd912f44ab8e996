"""Server-sent events: frame encoding, Last-Event-ID parsing, and the stream an HTTP route sends."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relaychat.realtime.bus import Subscription

HEARTBEAT = b": ping\n\n"
DEFAULT_RETRY_MS = 3000
# Proxies such as nginx buffer responses unless told not to; a buffered stream is not live.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"

# SSE knows only CR, LF and CRLF as line ends (str.splitlines would also split on \x0b, \u2028…).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_EVENT_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")  # not \d, which matches any Unicode digit
_MAX_ID_PART = 2**64 - 1

EventPosition = tuple[int, int]


def _field(name: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"SSE {name} cannot contain a line break: {value!r}")
    return f"{name}: {value}\n" if value else f"{name}:\n"


def format_frame(
    data: str,
    *,
    event: str | None = None,
    id: str | None = None,
    retry_ms: int | None = None,
) -> bytes:
    """One SSE frame; `data` may hold line breaks (each line becomes a `data:` line)."""
    parts: list[str] = []
    if id is not None:
        # An empty id is meaningful: it clears the client's Last-Event-ID.
        parts.append(_field("id", id))
    if event is not None:
        parts.append(_field("event", event))
    if retry_ms is not None:
        parts.append(f"retry: {int(retry_ms)}\n")
    parts.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    parts.append("\n")
    return "".join(parts).encode()


def with_id(event_id: str, body: bytes) -> bytes:
    """A frame body (event and data lines) prefixed with its `id:` line."""
    return b"id: " + event_id.encode() + b"\n" + body


def parse_event_id(value: str | bytes | None) -> EventPosition | None:
    """The position encoded in an event id or a Last-Event-ID header; None when malformed."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _EVENT_ID.fullmatch(value.strip())
    if match is None:
        return None
    ms, seq = int(match[1]), int(match[2])
    if ms > _MAX_ID_PART or seq > _MAX_ID_PART:
        return None
    return ms, seq


async def event_stream(
    subscription: Subscription,
    *,
    heartbeat_interval: float = 15.0,
    retry_ms: int | None = DEFAULT_RETRY_MS,
) -> AsyncGenerator[bytes, None]:
    """The bytes of an SSE response: a `retry:` hint, then frames, with a ping when idle.

    Ends when the subscription is dropped (slow client, lost Redis link, bus closed); the
    client then reconnects with Last-Event-ID and the bus replays what it missed.
    """
    async with subscription:
        if retry_ms is not None:
            yield f"retry: {int(retry_ms)}\n\n".encode()
        while True:
            try:
                # The yield stays outside the timeout scope: a deadline must not fire
                # while the consumer holds the generator suspended.
                async with asyncio.timeout(heartbeat_interval):
                    envelope = await anext(subscription)
            except TimeoutError:
                yield HEARTBEAT
                continue
            except StopAsyncIteration:
                return
            yield envelope.frame
