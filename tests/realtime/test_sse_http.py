"""The SSE stream over a real socket: what an app built on `stream_events` sends and frees."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from relaychat.realtime import EventBus, stream_events
from relaychat.realtime.sse import MEDIA_TYPE
from tests.support.realtime import DEADLOCK_GUARD, SSEMessage, delta, parse_sse


def sse_app(bus: EventBus) -> ASGIApp:
    """`GET /events/{user_id}` as the API serves it, minus authentication."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        last_event_id = dict(scope["headers"]).get(b"last-event-id")
        subscription = bus.subscribe(
            scope["path"].rpartition("/")[2],
            last_event_id=last_event_id.decode() if last_event_id else None,
        )
        await stream_events(subscription, receive, send, heartbeat_interval=DEADLOCK_GUARD)

    return app


@pytest.fixture
async def base_url(bus: EventBus) -> AsyncIterator[str]:
    """The app served by uvicorn on an ephemeral loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # Listening already: connections made before uvicorn is up wait in the backlog.
    sock.listen()
    port = sock.getsockname()[1]
    config = uvicorn.Config(sse_app(bus), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class Reader:
    """Dispatched SSE messages from a response, however its bytes are chunked."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.aiter_raw()
        self.received = b""
        self.seen = 0

    async def next(self) -> SSEMessage:
        """The next message (a `retry:`-only frame counts as one)."""
        async with asyncio.timeout(DEADLOCK_GUARD):
            while len(messages := parse_sse(self.received)) <= self.seen:
                self.received += await anext(self.chunks)
        self.seen += 1
        return messages[self.seen - 1]


async def test_stream_delivers_replays_and_frees_the_subscription(
    bus: EventBus, base_url: str
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        async with http.stream("GET", "/events/user-a") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith(MEDIA_TYPE)
            assert response.headers["cache-control"] == "no-cache"
            reader = Reader(response)
            assert (await reader.next()).retry == 3000
            first = await bus.publish("user-a", delta("c-1", "one"))
            message = await reader.next()
            assert (message.id, message.event) == (first, "message.delta")
            assert bus.subscriber_count("user-a") == 1

        # Closing the connection ends the stream and releases its subscription; nothing
        # announces when the server has noticed, so poll (bounded by the guard).
        async with asyncio.timeout(DEADLOCK_GUARD):
            while bus.subscriber_count("user-a"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        missed = await bus.publish("user-a", delta("c-1", "missed"))
        headers = {"Last-Event-ID": first}
        async with http.stream("GET", "/events/user-a", headers=headers) as response:
            reader = Reader(response)
            await reader.next()
            assert (await reader.next()).id == missed


async def test_closing_the_bus_ends_open_responses(bus: EventBus, base_url: str) -> None:
    async with (
        httpx.AsyncClient(base_url=base_url) as http,
        http.stream("GET", "/events/user-a") as response,
    ):
        reader = Reader(response)
        await reader.next()
        await bus.close()
        # The chunked body ends properly: a client sees a closed stream and reconnects.
        async with asyncio.timeout(DEADLOCK_GUARD):
            rest = [chunk async for chunk in reader.chunks]
        assert parse_sse(b"".join(rest)) == []
