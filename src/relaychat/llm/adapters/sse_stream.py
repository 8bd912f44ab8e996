"""Reading a streamed response ourselves, after the vendor SDK has sent the request.

The vendor SDKs build a pydantic model for every chunk of a stream, which costs more CPU
than everything else a relayed token needs. Adapters therefore let the SDK send the
request and map HTTP errors, then read the body's bytes through `SSEDecoder` and parse
each event's data into plain dicts themselves: `SSEAdapter` does the reading, a
`FrameReader` of each wire format the parsing.

`SSEDecoder` follows the WHATWG event-stream rules the SDKs follow too: lines end with LF,
CRLF or CR (also when split across reads); `data:` lines of one event are joined with LF;
an event is dispatched at a blank line, and only if it had a `data:` line; comments,
`id:`, `retry:` and unknown fields are ignored; a last event without its blank line is
dropped at the end of the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from relaychat.llm.base import AttemptEvents, BaseAdapter
from relaychat.llm.errors import ProviderError, ProviderStreamBroken, ProviderUnavailable

if TYPE_CHECKING:
    import httpx2

    from relaychat.llm.types import ChatRequest, StreamEvent

# How long to read on after the stream's last event for the end of the body, which lets an
# HTTP/1.1 connection go back to the pool (the OpenAI SDK's own stream does the same).
DRAIN_SECONDS = 0.1

# An event's name (None when it has no `event:` line) and its data, as raw UTF-8.
SSEEvent = tuple[str | None, bytes]


class SSEDecoder:
    """Feed it the body's chunks as they arrive; it returns the events they complete."""

    __slots__ = ("_data", "_event", "_partial", "_skip_lf")

    def __init__(self) -> None:
        # Pieces of the unfinished last line; a list, so a long line costs no repeated copies.
        self._partial: list[bytes] = []
        # The last chunk ended with CR: an LF starting the next one belongs to it.
        self._skip_lf = False
        self._data: bytes | None = None
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by `chunk`, in order.

        What is left over at the end of the stream is an event without its blank line,
        which the rules drop, so there is nothing to flush.
        """
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if b"\n" not in chunk and b"\r" not in chunk:
            if chunk:
                self._partial.append(chunk)
            return []
        if self._partial:
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial.clear()
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if tail:
            self._partial.append(tail)
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if line.startswith(b"data: "):
                value = line[6:]
            elif not line:
                if data is not None:
                    events.append((self._event, data))
                    data = None
                self._event = None
                continue
            elif line.startswith(b":"):
                continue  # a comment, such as a keep-alive
            else:
                name, _, value = line.partition(b":")
                if value.startswith(b" "):
                    value = value[1:]
                if name == b"event":
                    self._event = value.decode("utf-8", "replace")
                    continue
                if name != b"data":
                    continue  # id, retry and unknown fields mean nothing to us
            data = value if data is None else data + b"\n" + value
        self._data = data
        return events


def stream_settings(backup: httpx2.Timeout) -> tuple[httpx2.Timeout, dict[str, str]]:
    """The SDK timeout for streams, `backup` without its read deadline, and extra headers.

    `BaseAdapter` bounds every step of a stream with its first-token and idle timeouts
    already; the transport's own deadline for each read would only add a timer per chunk.
    The header the SDKs derive from the read timeout is sent as before all the same.
    """
    import httpx2

    timeout = httpx2.Timeout(
        connect=backup.connect, read=None, write=backup.write, pool=backup.pool
    )
    return timeout, {"x-stainless-read-timeout": str(backup.read)}


def body_chunks(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive.

    On the SDKs' own aiohttp transport (`DefaultAioHttpClient`, which wraps aiohttp's
    response in httpx2's), an uncompressed body is read from aiohttp straight: the layers
    between (the transport's stream, httpx2's raw and decoded iterators, its chunker) cost
    a generator step each for every chunk, that is for every token. aiohttp's errors come
    through as they are (`BaseAdapter._transport_error` knows them). Anything else, or a
    compressed body, is read through httpx2, which decompresses.
    """
    # httpx2's client wraps the transport's stream in one that times it (`BoundAsyncStream`).
    stream = getattr(response.stream, "_stream", response.stream)
    aiohttp_response = getattr(stream, "_aiohttp_response", None)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if aiohttp_response is None or encoding not in ("", "identity"):
        return response.aiter_bytes()
    iterator: AsyncIterator[bytes] = aiohttp_response.content.iter_any()
    return iterator


async def drain_after_end(response: httpx2.Response, chunks: AsyncIterator[bytes]) -> None:
    """Read the rest of the body after the last event, briefly, so the connection is reused."""
    import aiohttp
    import httpx2

    if response.http_version != "HTTP/1.1":
        return  # HTTP/2 closes just this stream and keeps the connection
    with contextlib.suppress(TimeoutError, httpx2.RequestError, aiohttp.ClientError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in chunks:
                pass


def request_error(exc: Exception, started: bool, **fields: Any) -> ProviderError | None:
    """The error for an httpx2 failure that is neither a timeout nor a transport error.

    Such as a body that fails to decompress, which the SDKs' streams called a connection
    error; anything else is None.
    """
    import httpx2

    if not isinstance(exc, httpx2.RequestError):
        return None
    if started:
        return ProviderStreamBroken(
            "The provider's stream could not be read", retryable=True, **fields
        )
    return ProviderUnavailable("Could not read the provider's answer", **fields)


class FrameReader(Protocol):
    """Stream events from the SSE events of one wire format, and what they told so far.

    `read` takes the SSE events of one read of the body. It stops at the event that ends
    the stream (`ended`) and at one that breaks it (`error`), which the caller raises after
    yielding the events that came before it in the same read.
    """

    error: ProviderError | None
    ended: bool

    def read(self, frames: list[SSEEvent]) -> list[StreamEvent]:
        """The events in `frames`, up to the end of the stream or the first bad event."""
        ...

    def finish(self) -> list[StreamEvent]:
        """The events after the body: complete tool calls, usage, and `Finish`.

        Raises ProviderStreamBroken when the stream never said why it finished.
        """
        ...


class SSEAdapter(BaseAdapter):
    """An adapter whose SDK sends the request, and whose SSE body we read ourselves."""

    @abstractmethod
    async def _send(self, request: ChatRequest) -> httpx2.Response:
        """Send the streaming request through the SDK; its response, body unread."""

    @abstractmethod
    def _reader(self) -> FrameReader:
        """A fresh reader of this wire format's events."""

    async def _attempt(self, request: ChatRequest) -> AttemptEvents:
        with self._upstream(started=False):
            response = await self._send(request)
        chunks = body_chunks(response)
        reader = self._reader()
        decoder = SSEDecoder()
        try:
            with self._upstream(started=True):
                async for data in chunks:
                    events = reader.read(decoder.feed(data))
                    for event in events:
                        yield event
                    if reader.error is not None or reader.ended:
                        break
                    if not events:
                        yield None  # keep-alives, pings and bookkeeping keep the idle timer at bay
                if reader.error is not None:
                    raise reader.error
                if reader.ended:
                    await drain_after_end(response, chunks)
        finally:
            aclose = getattr(chunks, "aclose", None)  # aiohttp's iterator has nothing to close
            if aclose is not None:
                await aclose()
            await response.aclose()
        for event in reader.finish():
            yield event
