from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from relaychat.realtime import Envelope, EventBus
from relaychat.realtime.bus import LogRead
from relaychat.realtime.events import Reset
from relaychat.realtime.sse import EventPosition, parse_event_id
from tests.support.realtime import DEADLOCK_GUARD, BusFactory, delta, frame_of, take, take_rest


def texts(envelopes: list[Envelope]) -> list[str]:
    """The delta text of each envelope (the events under test are all deltas)."""
    return [json.loads(frame_of(e).data)["delta"] for e in envelopes]


async def test_users_only_see_their_own_events(bus: EventBus) -> None:
    async with bus.subscribe("user-a") as sub_a, bus.subscribe("user-b") as sub_b:
        for text in ("a1", "a2", "a3"):
            await bus.publish("user-a", delta("c-a", text))
        await bus.publish("user-b", delta("c-b", "b1"))
        assert texts(await take(sub_a, 3)) == ["a1", "a2", "a3"]
        # B's marker was published last: had any of A's events reached B, it came first.
        (first_for_b,) = await take(sub_b, 1)
        assert texts([first_for_b]) == ["b1"]
        assert first_for_b.user_id == "user-b"


async def test_conversation_filter(bus: EventBus) -> None:
    async with (
        bus.subscribe("user-a") as everything,
        bus.subscribe("user-a", conversation_id="c-1") as only_c1,
    ):
        await bus.publish("user-a", delta("c-1", "one"))
        await bus.publish("user-a", delta("c-2", "two"))
        await bus.publish("user-a", delta("c-1", "three"))
        assert texts(await take(everything, 3)) == ["one", "two", "three"]
        assert texts(await take(only_c1, 2)) == ["one", "three"]


async def test_conversation_followers_get_their_conversation_and_the_users_events(
    bus: EventBus,
) -> None:
    """Subscriptions are filed by conversation: each gets its own conversation's events and
    the user's own (no conversation), whatever else is subscribed or leaves."""
    async with (
        bus.subscribe("user-a") as everything,
        bus.subscribe("user-a", conversation_id="c-1") as c1,
        bus.subscribe("user-a", conversation_id="c-2") as c2,
    ):
        async with bus.subscribe("user-a", conversation_id="c-1") as c1_again:
            await bus.publish("user-a", delta("c-1", "one"))
            await bus.publish("user-a", delta("c-3", "elsewhere"))
            assert texts(await take(c1_again, 1)) == ["one"]
        await bus.publish("user-a", Reset(reason="gap"))
        await bus.publish("user-a", delta("c-2", "two"))
        await bus.publish("user-a", delta("c-1", "three"))
        assert bus.subscriber_count("user-a") == 3
        got = await take(everything, 5)
        assert [e.type for e in got] == [*["message.delta"] * 2, "reset", *["message.delta"] * 2]
        assert [e.type for e in await take(c1, 3)] == ["message.delta", "reset", "message.delta"]
        assert [e.type for e in await take(c2, 2)] == ["reset", "message.delta"]
        assert not c2._live and not c1._live  # c-3's event reached neither
    assert bus.subscriber_count() == 0


async def test_ids_increase_per_user(bus: EventBus) -> None:
    async with bus.subscribe("user-a") as sub:
        ids = [await bus.publish("user-a", delta(f"c-{i % 3}", str(i))) for i in range(50)]
        received = await take(sub, 50)
    positions = [parse_event_id(event_id) for event_id in ids]
    assert all(p is not None for p in positions)
    assert positions == sorted(positions)  # type: ignore[type-var]
    assert len(set(positions)) == 50
    assert [e.id for e in received] == ids
    assert [frame_of(e).id for e in received] == ids


async def test_publish_many_is_publish_in_order(bus: EventBus) -> None:
    """A batch (the group-commit writer's) reaches subscribers and the log as if each
    event were published alone: in order, each user its own, ids increasing."""
    batch = [("user-a" if n % 3 else "user-b", delta("c-1", str(n))) for n in range(30)]
    async with bus.subscribe("user-a") as sub_a, bus.subscribe("user-b") as sub_b:
        first = await bus.publish("user-a", delta("c-1", "before"))
        ids = await bus.publish_many(batch)
        got_a = await take(sub_a, 21)
        got_b = await take(sub_b, 10)
    assert texts(got_a) == ["before"] + [str(n) for n in range(30) if n % 3]
    assert texts(got_b) == [str(n) for n in range(30) if not n % 3]
    ids_of_a = [i for (user, _), i in zip(batch, ids, strict=True) if user == "user-a"]
    assert [e.id for e in got_a[1:]] == ids_of_a
    # A stream resumed from before the batch replays all of it from the log.
    async with bus.subscribe("user-a", last_event_id=first) as resumed:
        assert texts(await take(resumed, 20)) == [str(n) for n in range(30) if n % 3]
    assert await bus.publish_many([]) == []


async def test_concurrent_publishes_arrive_in_the_order_asked(bus: EventBus) -> None:
    """Publishes from many tasks at once (Redis sends them in shared round trips) reach
    subscribers and ids in the order they were asked for."""
    async with bus.subscribe("user-a") as sub:
        ids = await asyncio.gather(
            *(bus.publish("user-a", delta(f"c-{n % 4}", str(n))) for n in range(200))
        )
        received = await take(sub, 200)
    assert texts(received) == [str(n) for n in range(200)]
    assert [e.id for e in received] == list(ids)
    positions = [parse_event_id(i) for i in ids]
    assert positions == sorted(positions)  # type: ignore[type-var]


async def test_same_frame_object_reaches_every_subscriber(bus: EventBus) -> None:
    async with (
        bus.subscribe("user-a") as one,
        bus.subscribe("user-a") as two,
        bus.subscribe("user-a", conversation_id="c-1") as three,
    ):
        await bus.publish("user-a", delta("c-1", "shared"))
        (a,), (b,), (c,) = await take(one, 1), await take(two, 1), await take(three, 1)
    assert a.frame is b.frame is c.frame


async def test_replay_sends_exactly_the_missed_events(bus: EventBus) -> None:
    ids = [await bus.publish("user-a", delta("c-1", str(i))) for i in range(6)]
    async with bus.subscribe("user-a", last_event_id=ids[2]) as sub:
        live = await bus.publish("user-a", delta("c-1", "live"))
        received = await take(sub, 4)
        assert [e.id for e in received] == [*ids[3:], live]
        marker = await bus.publish("user-a", delta("c-1", "marker"))
        assert [e.id for e in await take(sub, 1)] == [marker]


async def test_replay_of_latest_id_replays_nothing(bus: EventBus) -> None:
    ids = [await bus.publish("user-a", delta("c-1", str(i))) for i in range(3)]
    async with bus.subscribe("user-a", last_event_id=ids[-1]) as sub:
        live = await bus.publish("user-a", delta("c-1", "live"))
        assert [e.id for e in await take(sub, 1)] == [live]


async def test_replay_respects_the_conversation_filter(bus: EventBus) -> None:
    first = await bus.publish("user-a", delta("c-1", "seen"))
    await bus.publish("user-a", delta("c-2", "other"))
    await bus.publish("user-a", delta("c-1", "missed"))
    async with bus.subscribe("user-a", conversation_id="c-1", last_event_id=first) as sub:
        await bus.publish("user-a", delta("c-2", "other live"))
        await bus.publish("user-a", delta("c-1", "live"))
        assert texts(await take(sub, 2)) == ["missed", "live"]


async def test_events_published_while_replaying_arrive_once(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [await bus.publish("user-a", delta("c-1", str(i))) for i in range(3)]
    read_log = bus._read_log
    during: list[str] = []

    async def racing_read_log(user_id: str, after: EventPosition | None) -> LogRead:
        # Listening has begun: this event reaches both the log read and the live queue.
        during.append(await bus.publish("user-a", delta("c-1", "before read")))
        result = await read_log(user_id, after)
        # The log has been read: this event exists only in the live queue.
        during.append(await bus.publish("user-a", delta("c-1", "after read")))
        return result

    monkeypatch.setattr(bus, "_read_log", racing_read_log)
    async with bus.subscribe("user-a", last_event_id=ids[0]) as sub:
        received = await take(sub, 4)
        assert [e.id for e in received] == [*ids[1:], *during]
        marker = await bus.publish("user-a", delta("c-1", "marker"))
        assert [e.id for e in await take(sub, 1)] == [marker]


async def test_reconnect_during_a_burst_misses_nothing(bus: EventBus) -> None:
    published: list[str] = []
    halfway = asyncio.Event()

    async def publisher() -> None:
        for i in range(120):
            text = "end" if i == 119 else str(i)
            published.append(await bus.publish("user-a", delta("c-1", text)))
            if i == 40:
                halfway.set()
            await asyncio.sleep(0)

    async with asyncio.timeout(DEADLOCK_GUARD):
        task = asyncio.create_task(publisher())
        await halfway.wait()
        resume_from = published[-1]
        async with bus.subscribe("user-a", last_event_id=resume_from) as sub:
            received: list[Envelope] = []
            while not received or texts(received[-1:]) != ["end"]:
                received.append(await anext(sub))
        await task
    assert [e.id for e in received] == published[published.index(resume_from) + 1 :]


async def test_id_older_than_the_log_yields_reset(make_bus: BusFactory) -> None:
    bus = await make_bus(log_size=10)
    # Enough events that Redis' approximate trimming (whole nodes of 100) drops the first.
    ids = [await bus.publish("user-a", delta("c-1", str(i))) for i in range(300)]
    async with bus.subscribe("user-a", last_event_id=ids[0]) as sub:
        live = await bus.publish("user-a", delta("c-1", "live"))
        reset, after = await take(sub, 2)
    message = frame_of(reset)
    assert (reset.type, message.event, json.loads(message.data)["reason"]) == (
        "reset",
        "reset",
        "gap",
    )
    # The reset carries the newest logged id, so the next reconnect resumes from there.
    assert message.id == ids[-1]
    assert after.id == live


@pytest.mark.parametrize(
    ("last_event_id", "reason"),
    [("garbage", "malformed_id"), ("1-2-3", "malformed_id"), ("99999999999999-0", "gap")],
)
async def test_unknown_id_yields_reset(bus: EventBus, last_event_id: str, reason: str) -> None:
    newest = await bus.publish("user-a", delta("c-1", "old"))
    async with bus.subscribe("user-a", last_event_id=last_event_id) as sub:
        live = await bus.publish("user-a", delta("c-1", "live"))
        reset, after = await take(sub, 2)
    assert (reset.type, json.loads(frame_of(reset).data)["reason"]) == ("reset", reason)
    assert frame_of(reset).id == newest
    assert after.id == live


async def test_reset_with_empty_log_clears_the_client_id(bus: EventBus) -> None:
    async with bus.subscribe("user-new", last_event_id="1-0") as sub:
        (reset,) = await take(sub, 1)
    assert reset.type == "reset"
    assert reset.frame.startswith(b"id:\n")


async def test_slow_subscriber_is_dropped_and_others_get_everything(
    make_bus: BusFactory,
) -> None:
    bus = await make_bus(queue_size=4)
    async with bus.subscribe("user-a") as fast, bus.subscribe("user-a") as slow:
        ids: list[str] = []
        received: list[str] = []
        for i in range(12):
            ids.append(await bus.publish("user-a", delta("c-1", str(i))))
            # The fast client reads each event as it comes; the slow one reads nothing.
            received.extend(e.id for e in await take(fast, 1))
        assert received == ids
        assert slow.dropped
        assert await take_rest(slow) == []
        assert not fast.dropped
        assert bus.subscriber_count("user-a") == 1


async def test_close_ends_every_subscription(make_bus: BusFactory) -> None:
    bus = await make_bus()
    async with bus.subscribe("user-a") as sub:
        waiting = asyncio.create_task(take_rest(sub))
        await asyncio.sleep(0)
        await bus.close()
        assert await waiting == []
        assert sub.dropped
    with pytest.raises(RuntimeError, match="not started"):
        async with bus.subscribe("user-a"):
            pass


async def test_leaving_a_subscription_unregisters_it(bus: EventBus) -> None:
    async with bus.subscribe("user-a"), bus.subscribe("user-a", conversation_id="c-1"):
        assert bus.subscriber_count("user-a") == 2
    assert bus.subscriber_count() == 0


async def test_idle_subscriptions_hold_no_queues(bus: EventBus) -> None:
    # Thousands of idle streams per worker: an empty deque each would cost ~600 bytes.
    first = await bus.publish("user-a", delta("c-1", "seen"))
    async with bus.subscribe("user-a") as live, bus.subscribe("user-a", last_event_id=first) as re:
        assert (live._backlog, re._backlog) == (None, None)  # nothing to replay
        one = await bus.publish("user-a", delta("c-1", "one"))
        for sub in (live, re):  # Redis may deliver "seen" late: read through to "one"
            while (await take(sub, 1))[0].id != one:
                pass
        assert (live._live, live._backlog, re._live, re._backlog) == (None, None, None, None)
    assert not hasattr(live, "__dict__")


async def test_pop_wait_and_wake(bus: EventBus) -> None:
    async with bus.subscribe("user-a") as sub:
        assert sub.pop() is None
        waiting = asyncio.create_task(sub.wait())
        await asyncio.sleep(0)
        sub.wake()  # returns without an envelope: the caller has its own reason
        async with asyncio.timeout(DEADLOCK_GUARD):
            await waiting
        assert sub.pop() is None
        waiting = asyncio.create_task(sub.wait())
        event_id = await bus.publish("user-a", delta("c-1", "one"))
        async with asyncio.timeout(DEADLOCK_GUARD):
            await waiting
        envelope = sub.pop()
        assert envelope is not None
        assert envelope.id == event_id
        assert sub.pop() is None


async def test_close_detaches_at_once_and_ends_iteration(bus: EventBus) -> None:
    async with bus.subscribe("user-a") as sub:
        waiting = asyncio.create_task(take_rest(sub))
        await asyncio.sleep(0)
        sub.close()
        assert bus.subscriber_count("user-a") == 0
        assert await waiting == []
        assert sub.closed
        assert not sub.dropped
        await sub.wait()  # returns at once once closed


async def test_signals_reach_handlers(bus: EventBus) -> None:
    got: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    def failing(payload: dict[str, Any]) -> None:
        raise RuntimeError("a broken handler must not stop the others")

    def handler(payload: dict[str, Any]) -> None:
        got.append(payload)
        arrived.set()

    bus.on_signal("abort", failing)
    unregister = bus.on_signal("abort", handler)
    bus.on_signal("other", lambda payload: got.append({"wrong": "channel"}))
    await bus.signal("abort", {"generation_id": "g-1", "n": [1, 2]})
    async with asyncio.timeout(DEADLOCK_GUARD):
        await arrived.wait()
    assert got == [{"generation_id": "g-1", "n": [1, 2]}]
    unregister()
    unregister()  # idempotent


async def test_signal_payload_must_be_json(bus: EventBus) -> None:
    with pytest.raises(TypeError):
        await bus.signal("abort", {"when": object()})
