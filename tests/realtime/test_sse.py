from __future__ import annotations

from contextlib import aclosing

import pytest

from relaychat.realtime import EventBus, event_stream
from relaychat.realtime.sse import HEARTBEAT, format_frame, parse_event_id
from tests.realtime.conftest import BusFactory
from tests.realtime.helpers import DEADLOCK_GUARD, delta, parse_sse


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


async def test_stream_starts_with_retry_and_pings_when_idle(bus: EventBus) -> None:
    stream = event_stream(bus.subscribe("user-a"), heartbeat_interval=0.01, retry_ms=1500)
    async with aclosing(stream):
        assert await anext(stream) == b"retry: 1500\n\n"
        assert await anext(stream) == HEARTBEAT
        event_id = await bus.publish("user-a", delta("c-1", "hi"))
        chunk = await anext(stream)
        while chunk == HEARTBEAT:
            chunk = await anext(stream)
        (message,) = parse_sse(chunk)
        assert (message.id, message.event) == (event_id, "message.delta")


async def test_stream_ends_when_subscription_is_dropped(make_bus: BusFactory) -> None:
    bus = await make_bus(queue_size=1)
    stream = event_stream(bus.subscribe("user-a"), heartbeat_interval=DEADLOCK_GUARD)
    async with aclosing(stream):
        assert (await anext(stream)).startswith(b"retry:")
        # The client has not read its queued event: the second one overflows and drops it.
        await bus.publish("user-a", delta("c-1", "one"))
        await bus.publish("user-a", delta("c-1", "two"))
        marker = bus.subscribe("user-a")
        async with marker:
            await bus.publish("user-a", delta("c-1", "three"))
            await anext(marker)  # once a later event is delivered, the drop has happened
        assert [chunk async for chunk in stream] == []
