"""Server-sent events: frame encoding, Last-Event-ID parsing, and the response of a stream.

The response is written with raw ASGI calls rather than a StreamingResponse: thousands of
streams stay open per worker, mostly idle, and each one's memory is what is held while it
waits (a task group, wrapper frames and a timeout each cost kilobytes per connection).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from relaychat.realtime.heartbeat import shared_heartbeat

if TYPE_CHECKING:
    from starlette.types import Receive, Send

    from relaychat.realtime.bus import Subscription

logger = logging.getLogger(__name__)

HEARTBEAT = b": ping\n\n"
DEFAULT_RETRY_MS = 3000
# Proxies such as nginx buffer responses unless told not to; a buffered stream is not live.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"
# The headers of a stream response, as a StreamingResponse would send SSE_HEADERS.
SSE_RAW_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    *((name.lower().encode(), value.encode()) for name, value in SSE_HEADERS.items()),
    (b"content-type", f"{MEDIA_TYPE}; charset=utf-8".encode()),
)
# Frames queued together are sent in one write, up to about this much.
_BATCH_BYTES = 64 * 1024

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


def stream_events(
    subscription: Subscription,
    receive: Receive,
    send: Send,
    *,
    heartbeat_interval: float = 15.0,
    retry_ms: int | None = DEFAULT_RETRY_MS,
    headers: Sequence[tuple[bytes, bytes]] = SSE_RAW_HEADERS,
) -> Coroutine[Any, Any, None]:
    """Send `subscription` as a whole SSE response over raw ASGI `receive` and `send`.

    A `retry:` hint, then frames as they come (those queued together in one write), and
    a ping after `heartbeat_interval` seconds without one. Ends when the client goes away
    (seen on `receive`, so a closed tab frees its subscription at once) or when the
    subscription is dropped (slow client, lost Redis link, bus closed); the client then
    reconnects with Last-Event-ID and the bus replays what it missed. The replay is read
    before the response starts, so a failing log read can still become an error response.

    Returns the coroutine to await rather than wrapping it: one frame less held per stream.
    """
    return _Stream(subscription).run(receive, send, heartbeat_interval, retry_ms, headers)


class _Stream:
    """The state of one open stream besides its subscription: kept small (see module doc)."""

    __slots__ = ("client_gone", "ping", "subscription")

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.ping = False
        self.client_gone = False

    def heartbeat_due(self) -> None:
        self.ping = True
        self.subscription.wake()

    async def run(
        self,
        receive: Receive,
        send: Send,
        heartbeat_interval: float,
        retry_ms: int | None,
        headers: Sequence[tuple[bytes, bytes]],
    ) -> None:
        subscription = self.subscription
        heartbeat = shared_heartbeat(heartbeat_interval)
        async with subscription:
            await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
            # The one task besides the request's own: something has to wait on `receive`
            # while this one waits for events. It holds little (no task group, no scope).
            listener = asyncio.get_running_loop().create_task(_until_disconnect(receive))
            listener.add_done_callback(self._client_left)
            heartbeat.touch(self)
            chunk = f"retry: {int(retry_ms)}\n\n".encode() if retry_ms is not None else b""
            try:
                while True:
                    if not chunk:
                        chunk = _take(subscription)
                    if not chunk:
                        if subscription.closed:
                            break
                        if not self.ping:
                            await subscription.wait()
                            continue
                        chunk = HEARTBEAT
                    self.ping = False
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    heartbeat.touch(self)
                    chunk = b""
            finally:
                heartbeat.discard(self)
                listener.cancel()
        if not self.client_gone:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _client_left(self, listener: asyncio.Task[None]) -> None:
        if listener.cancelled():  # we stopped listening: the stream ended on our side
            return
        if listener.exception() is not None:
            # A server whose receive fails has lost the connection just the same.
            logger.debug("event stream receive failed", exc_info=listener.exception())
        self.client_gone = True
        self.subscription.close()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _take(subscription: Subscription) -> bytes:
    """The frames queued on `subscription`, joined, up to about _BATCH_BYTES."""
    first = subscription.pop()
    if first is None:
        return b""
    envelope = subscription.pop()
    if envelope is None:
        return first.frame  # the usual case: no copy
    frames = [first.frame]
    size = len(first.frame)
    while envelope is not None:
        frames.append(envelope.frame)
        size += len(envelope.frame)
        if size >= _BATCH_BYTES:
            break
        envelope = subscription.pop()
    return b"".join(frames)
