from __future__ import annotations

import asyncio
import json

import pytest
from starlette.types import Message

from relaychat.realtime import SSE_RAW_HEADERS, EventBus, MemoryEventBus, stream_events
from relaychat.realtime.heartbeat import shared_heartbeat
from relaychat.realtime.sse import HEARTBEAT, format_frame, parse_event_id
from tests.support.realtime import DEADLOCK_GUARD, BusFactory, FakeConnection, delta, parse_sse


def test_frame_fields_and_multiline_data() -> None:
    frame = format_frame("one\ntwo\r\nthree\rfour", event="message.delta", id="5-1")
    assert frame == (
        b"id: 5-1\nevent: message.delta\ndata: one\ndata: two\ndata: three\ndata: four\n\n"
    )
    (message,) = parse_sse(frame)
    assert (message.id, message.event) == ("5-1", "message.delta")
    assert message.data == "one\ntwo\nthree\nfour"


@pytest.mark.parametrize("data", ["", "plain", "trailing\n", "\n\nlead", "tab\tand\u2028sep"])
def test_frame_data_round_trips(data: str) -> None:
    (message,) = parse_sse(format_frame(data))
    expected = data.replace("\r\n", "\n").replace("\r", "\n")
    assert message.data == expected


def test_empty_id_clears_last_event_id() -> None:
    assert format_frame("{}", event="reset", id="").startswith(b"id:\n")


@pytest.mark.parametrize("field", ["event", "id"])
def test_frame_refuses_line_breaks_in_fields(field: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        format_frame("x", **{field: "a\nevent: injected"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1700000000000-0", (1700000000000, 0)),
        (" 12-3 ", (12, 3)),
        (b"7-8", (7, 8)),
        (None, None),
        ("", None),
        ("12", None),
        ("12-", None),
        ("-3", None),
        ("a-b", None),
        ("1-2-3", None),
        ("١٢-٣", None),  # non-ASCII digits
        (f"{2**64}-0", None),
        ("9" * 25 + "-0", None),
        (b"\xff-1", None),
    ],
)
def test_parse_event_id(value: str | bytes | None, expected: tuple[int, int] | None) -> None:
    assert parse_event_id(value) == expected


async def test_stream_sends_headers_retry_then_pings_when_idle(bus: EventBus) -> None:
    conn = FakeConnection()
    stream = asyncio.create_task(
        stream_events(
            bus.subscribe("user-a"),
            conn.receive,
            conn.send,
            heartbeat_interval=0.01,
            retry_ms=1500,
        )
    )
    try:
        assert await conn.chunk() == b"retry: 1500\n\n"
        start = conn.messages[0]
        assert (start["type"], start["status"]) == ("http.response.start", 200)
        assert start["headers"] == list(SSE_RAW_HEADERS)
        assert dict(start["headers"])[b"content-type"] == b"text/event-stream; charset=utf-8"
        assert await conn.chunk() == HEARTBEAT
        event_id = await bus.publish("user-a", delta("c-1", "hi"))
        chunk = await conn.chunk()
        while chunk == HEARTBEAT:
            chunk = await conn.chunk()
        assert chunk is not None
        (message,) = parse_sse(chunk)
        assert (message.id, message.event) == (event_id, "message.delta")
    finally:
        conn.disconnect()
        await stream


async def test_disconnect_releases_the_subscription_at_once(bus: EventBus) -> None:
    conn = FakeConnection()
    stream = asyncio.create_task(
        stream_events(bus.subscribe("user-a"), conn.receive, conn.send, heartbeat_interval=60)
    )
    assert (await conn.chunk() or b"").startswith(b"retry:")
    assert bus.subscriber_count("user-a") == 1
    conn.disconnect()
    async with asyncio.timeout(DEADLOCK_GUARD):
        await stream
    assert bus.subscriber_count("user-a") == 0
    # Nothing is sent to a client that has gone, not even the end of the body.
    assert [m for m in conn.messages if m["type"] == "http.response.body"] == [
        {"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True}
    ]
    assert len(shared_heartbeat(60)) == 0


async def test_stream_ends_when_subscription_is_dropped(make_bus: BusFactory) -> None:
    bus = await make_bus(queue_size=1)
    sent = asyncio.Event()
    conn = FakeConnection()
    blocked = asyncio.Event()

    async def stalled_send(message: Message) -> None:
        # A client that stops reading: once the stream has sent its first frame, the
        # next write hangs until the test lets it through.
        await conn.send(message)
        if message.get("body", b"").startswith(b"retry:"):
            sent.set()
        elif message.get("body"):
            blocked.set()
            await release.wait()

    release = asyncio.Event()
    stream = asyncio.create_task(
        stream_events(bus.subscribe("user-a"), conn.receive, stalled_send, heartbeat_interval=60)
    )
    async with asyncio.timeout(DEADLOCK_GUARD):
        await sent.wait()
        await bus.publish("user-a", delta("c-1", "one"))
        await blocked.wait()  # the stream is stuck writing "one"
        # "two" fills the queue; "three" overflows it and drops the subscriber. The
        # marker (queue of one too) is read after each publish: on Redis an event
        # reaches subscribers after publish returns, so reading both at the end
        # could overflow the marker itself.
        marker = bus.subscribe("user-a")
        async with marker:
            two = await bus.publish("user-a", delta("c-1", "two"))
            assert (await anext(marker)).id == two
            three = await bus.publish("user-a", delta("c-1", "three"))
            # Events reach subscribers in order, so once "three" is delivered the
            # drop has happened.
            assert (await anext(marker)).id == three
        assert bus.subscriber_count("user-a") == 0
        release.set()
        await stream
    bodies = [m for m in conn.messages if m["type"] == "http.response.body"]
    # The response ends cleanly (the client reconnects and replays); nothing after "one".
    assert bodies[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    sent_text = [
        json.loads(m.data)["delta"]
        for m in parse_sse(b"".join(b["body"] for b in bodies))
        if m.event == "message.delta"
    ]
    assert sent_text == ["one"]


async def test_frames_queued_together_go_out_in_one_write() -> None:
    # The memory bus delivers as it publishes, so the events are surely queued together.
    bus = MemoryEventBus()
    await bus.start()
    conn = FakeConnection()
    subscription = bus.subscribe("user-a")
    stream = asyncio.create_task(
        stream_events(subscription, conn.receive, conn.send, heartbeat_interval=60)
    )
    try:
        await conn.chunk()
        # Published in one go, before the stream task runs again: queued together.
        ids = [await bus.publish("user-a", delta("c-1", str(i))) for i in range(3)]
        chunk = await conn.chunk()
        assert chunk is not None
        assert [m.id for m in parse_sse(chunk)] == ids
    finally:
        conn.disconnect()
        await stream
        await bus.close()


async def test_replay_is_sent_after_the_retry_hint(bus: EventBus) -> None:
    first = await bus.publish("user-a", delta("c-1", "seen"))
    missed = await bus.publish("user-a", delta("c-1", "missed"))
    conn = FakeConnection()
    subscription = bus.subscribe("user-a", last_event_id=first)
    stream = asyncio.create_task(
        stream_events(subscription, conn.receive, conn.send, heartbeat_interval=60)
    )
    try:
        assert (await conn.chunk() or b"").startswith(b"retry:")
        (message,) = parse_sse(await conn.chunk() or b"")
        assert message.id == missed
    finally:
        conn.disconnect()
        await stream


async def test_a_failed_replay_fails_before_the_response_starts(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> None:
        raise ConnectionError("log unavailable")

    monkeypatch.setattr(bus, "_read_log", broken)
    conn = FakeConnection()
    with pytest.raises(ConnectionError):
        await stream_events(bus.subscribe("user-a", last_event_id="1-0"), conn.receive, conn.send)
    assert conn.messages == []  # so the app can still answer with an error
    assert bus.subscriber_count("user-a") == 0
