"""What only the Redis bus does: cross-worker delivery, shared keys, one connection, reconnects."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from relaychat.realtime import RedisEventBus, create_event_bus
from relaychat.realtime.memory import MemoryEventBus
from relaychat.realtime.sse import parse_event_id
from tests.support.backends import REDIS_ENV, REDIS_PREFIX_ROOT, required_url
from tests.support.realtime import DEADLOCK_GUARD, BusFactory, delta, take, take_rest


async def test_workers_see_each_others_events(make_redis_bus: BusFactory) -> None:
    worker_a, worker_b = await make_redis_bus(), await make_redis_bus()
    async with worker_a.subscribe("user-a") as on_a, worker_b.subscribe("user-a") as on_b:
        ids = [
            await worker_a.publish("user-a", delta("c-1", "from a")),
            await worker_b.publish("user-a", delta("c-1", "from b")),
            await worker_a.publish("user-a", delta("c-2", "from a again")),
        ]
        assert [e.id for e in await take(on_a, 3)] == ids
        assert [e.id for e in await take(on_b, 3)] == ids
    # One stream per user, whichever worker appended to it.
    positions = [parse_event_id(event_id) for event_id in ids]
    assert positions == sorted(positions)  # type: ignore[type-var]


async def test_replay_on_another_worker(make_redis_bus: BusFactory) -> None:
    worker_a, worker_b = await make_redis_bus(), await make_redis_bus()
    ids = [await worker_a.publish("user-a", delta("c-1", str(i))) for i in range(4)]
    async with worker_b.subscribe("user-a", last_event_id=ids[1]) as sub:
        live = await worker_a.publish("user-a", delta("c-1", "live"))
        assert [e.id for e in await take(sub, 3)] == [*ids[2:], live]


async def test_signals_reach_every_worker(make_redis_bus: BusFactory) -> None:
    workers = [await make_redis_bus(), await make_redis_bus()]
    received: list[list[dict[str, Any]]] = [[], []]
    arrivals = [asyncio.Event(), asyncio.Event()]
    for index, worker in enumerate(workers):

        def handler(payload: dict[str, Any], index: int = index) -> None:
            received[index].append(payload)
            arrivals[index].set()

        worker.on_signal("abort", handler)
    await workers[1].signal("abort", {"generation_id": "g-1"})
    async with asyncio.timeout(DEADLOCK_GUARD):
        for arrival in arrivals:
            await arrival.wait()
    assert received == [[{"generation_id": "g-1"}], [{"generation_id": "g-1"}]]


async def test_one_pubsub_connection_per_worker(make_redis_bus: BusFactory) -> None:
    worker_a = await make_redis_bus()
    await make_redis_bus()  # a second worker: one more connection, however many tabs it serves
    assert isinstance(worker_a, RedisEventBus)
    subscriptions = [worker_a.subscribe(f"user-{i % 5}") for i in range(40)]
    for subscription in subscriptions:
        await subscription.__aenter__()
    try:
        numsub = await worker_a._redis.pubsub_numsub(worker_a.channel)
        assert numsub == [(worker_a.channel.encode(), 2)]
    finally:
        for subscription in subscriptions:
            await subscription.__aexit__(None, None, None)


async def test_keys_carry_the_prefix_and_the_log_is_bounded(make_redis_bus: BusFactory) -> None:
    bus = await make_redis_bus(log_size=10, log_ttl_seconds=60)
    assert isinstance(bus, RedisEventBus)
    for i in range(250):
        await bus.publish("user-a", delta("c-1", str(i)))
    redis = bus._redis
    prefix = bus.key_prefix
    assert prefix.startswith(REDIS_PREFIX_ROOT)
    assert bus.channel.startswith(prefix)
    assert [key async for key in redis.scan_iter(match=f"{prefix}*")] == [
        bus.log_key("user-a").encode()
    ]
    # MAXLEN ~ trims whole stream nodes (100 entries by default), never below log_size.
    assert 10 <= await redis.xlen(bus.log_key("user-a")) <= 110
    assert 0 < await redis.ttl(bus.log_key("user-a")) <= 60


async def test_lost_subscription_drops_subscribers_then_recovers() -> None:
    url = required_url(REDIS_ENV)
    name = f"rctest-bus-{uuid.uuid4().hex}"
    prefix = f"{REDIS_PREFIX_ROOT}reconnect:"
    redis = Redis.from_url(url, client_name=name)
    admin = Redis.from_url(url)
    bus = RedisEventBus(redis, prefix)
    try:
        await bus.start()
        async with bus.subscribe("user-a") as sub:
            clients = await admin.client_list(_type="pubsub")
            (ours,) = [c for c in clients if c["name"] == name]
            await admin.client_kill_filter(_id=ours["id"])
            # Whatever was published while the link was down is lost to live delivery,
            # so the subscriber ends and its client reconnects with Last-Event-ID.
            assert await take_rest(sub) == []
            assert sub.dropped
        # A subscription opened before the bus has resubscribed is dropped too; retry.
        async with asyncio.timeout(DEADLOCK_GUARD):
            while True:
                async with bus.subscribe("user-a") as sub:
                    event_id = await bus.publish("user-a", delta("c-1", "after"))
                    envelope = await anext(sub, None)
                if envelope is not None:
                    assert envelope.id == event_id
                    break
                await asyncio.sleep(0.01)
    finally:
        await bus.close()
        keys = [key async for key in admin.scan_iter(match=f"{prefix}*")]
        if keys:
            await admin.delete(*keys)
        await redis.aclose()
        await admin.aclose()


async def test_factory_picks_the_implementation() -> None:
    assert isinstance(create_event_bus(None, "relaychat:"), MemoryEventBus)
    redis = Redis.from_url("redis://127.0.0.1:1/0")  # never connected
    try:
        bus = create_event_bus(redis, "relaychat:", log_size=50)
        assert isinstance(bus, RedisEventBus)
        assert (bus.log_size, bus.channel) == (50, "relaychat:realtime")
    finally:
        await redis.aclose()


async def test_refuses_decoded_responses() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisEventBus(redis, "relaychat:")
    finally:
        await redis.aclose()
