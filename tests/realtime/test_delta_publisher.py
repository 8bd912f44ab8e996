"""A reply's text deltas: in order, all of them, and on an I/O bus at most so often."""

from __future__ import annotations

import asyncio
import json

import pytest

from relaychat.domain.answering import agent_loop
from relaychat.domain.answering.agent_loop import DeltaPublisher, Job
from relaychat.llm.types import ChatRequest
from relaychat.realtime import EventBus, MemoryEventBus
from relaychat.realtime.bus import Subscription
from relaychat.realtime.events import MessageDelta
from tests.support.realtime import DEADLOCK_GUARD, BusFactory, parse_sse


def job() -> Job:
    return Job(
        generation_id="g-1",
        user_id="user-a",
        conversation_id="c-1",
        message_id="m-1",
        endpoint="fake",
        request=ChatRequest(model="m", messages=[]),
        wants_title=False,
    )


def launched() -> tuple[Job, asyncio.Future[bool]]:
    """A reply's job launched before its rows' commit, and the future that tells it how
    that went."""
    reply = job()
    stored = reply.stored = asyncio.get_running_loop().create_future()
    return reply, stored


async def next_delta(subscription: Subscription) -> str:
    envelope = await anext(subscription)
    (message,) = parse_sse(envelope.frame)
    delta: str = json.loads(message.data)["delta"]
    return delta


async def test_text_between_two_publishes_goes_out_as_one_delta(
    make_bus: BusFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An interval no test outlasts: only `flush` (the reply's end) may cut it short.
    monkeypatch.setattr(agent_loop, "DELTA_INTERVAL", 3600.0)
    bus: EventBus = await make_bus()
    in_process = isinstance(bus, MemoryEventBus)
    publisher = DeltaPublisher(job(), bus)
    async with asyncio.timeout(DEADLOCK_GUARD), bus.subscribe("user-a") as subscription:
        publisher.push("one ")
        assert await next_delta(subscription) == "one "  # the first goes at once
        publisher.push("two ")
        await asyncio.sleep(0.05)  # time enough to publish it alone, were there no interval
        publisher.push("three")
        await publisher.flush()
        rest = [await next_delta(subscription)]
        if in_process:  # no I/O to save: each delta as it comes
            rest.append(await next_delta(subscription))
        await publisher.close()
    assert rest == (["two ", "three"] if in_process else ["two three"])


async def test_after_the_end_the_next_text_waits_for_the_interval_again(
    make_redis_bus: BusFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reply of several steps (tool calls between) flushes after each; the hurry of one
    # flush must not carry over to the deltas of the next step.
    monkeypatch.setattr(agent_loop, "DELTA_INTERVAL", 3600.0)
    bus = await make_redis_bus()  # the memory bus publishes each delta at once
    publisher = DeltaPublisher(job(), bus)
    async with asyncio.timeout(DEADLOCK_GUARD), bus.subscribe("user-a") as subscription:
        publisher.push("a")
        await publisher.flush()
        assert await next_delta(subscription) == "a"
        publisher.push("b")
        await asyncio.sleep(0.05)
        publisher.push("c")
        await publisher.flush()
        assert await next_delta(subscription) == "bc"
        await publisher.close()


async def test_text_before_the_commit_goes_out_once_stored_without_hurrying_the_rows(
    make_bus: BusFactory,
) -> None:
    # A launcher holds a reply's writes until the run needs them; text does not (a reply
    # that ends first is written whole, once).
    bus: EventBus = await make_bus()
    reply, stored = launched()
    publisher = DeltaPublisher(reply, bus)
    async with asyncio.timeout(DEADLOCK_GUARD), bus.subscribe("user-a") as subscription:
        publisher.push("early ")
        publisher.push("text")
        assert not reply.rows_needed.is_set()
        assert subscription.pop() is None
        stored.set_result(True)
        await publisher.flush()
        assert await next_delta(subscription) == "early text"
        await publisher.close()


async def test_text_of_a_reply_never_stored_is_dropped(make_bus: BusFactory) -> None:
    bus: EventBus = await make_bus()
    reply, stored = launched()
    publisher = DeltaPublisher(reply, bus)
    async with asyncio.timeout(DEADLOCK_GUARD), bus.subscribe("user-a") as subscription:
        publisher.push("lost")
        stored.set_result(False)
        await publisher.flush()
        publisher.push("also lost")
        await publisher.flush()
        marker = MessageDelta(conversation_id="c-1", message_id="m-1", delta="x")
        await bus.publish("user-a", marker)
        assert await next_delta(subscription) == "x"  # the first event on the stream
        await publisher.close()
