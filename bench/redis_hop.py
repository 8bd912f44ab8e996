"""Latency the Redis hop adds between two workers, against the memory bus and a raw PUBLISH.

Worker A publishes, one subscriber on worker B (its own client and connection pool, as a
separate process would have) receives. Baselines in the same run: the memory bus (no hop
at all) and a bare `PUBLISH` of a same-sized payload to a bare pub/sub listener (the hop
alone, without the log append or the bus's dispatch).

    uv run python -m bench.redis_hop [--redis-url redis://127.0.0.1:6379/0] [--rounds 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import uuid

from redis.asyncio import Redis

from bench.fanout import EVENT, USER, summary
from relaychat.realtime import EventBus, MemoryEventBus, RedisEventBus
from relaychat.realtime.bus import encode_body

TARGET_ADDED_P99_MS = 1.0
WARMUP = 50


async def bus_hop(publisher: EventBus, receiver: EventBus, rounds: int) -> list[int]:
    """Publish on one bus, receive on a subscription of the other; one event at a time."""
    latencies: list[int] = []
    async with receiver.subscribe(USER) as subscription:
        for round_ in range(WARMUP + rounds):
            t0 = time.perf_counter_ns()
            await publisher.publish(USER, EVENT)
            async with asyncio.timeout(10):
                await anext(subscription)
            if round_ >= WARMUP:
                latencies.append(time.perf_counter_ns() - t0)
    return latencies


async def raw_hop(url: str, rounds: int) -> list[int]:
    """PUBLISH on one client, read on another client's pub/sub: the bare Redis hop."""
    channel = f"bench:{uuid.uuid4().hex[:8]}:raw"
    payload = b"E1700000000000-0\n" + b'["u","c","t"]\n' + encode_body(EVENT)
    sender, listener = Redis.from_url(url), Redis.from_url(url)
    pubsub = listener.pubsub()
    latencies: list[int] = []
    try:
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=5)  # the subscribe confirmation
        for round_ in range(WARMUP + rounds):
            t0 = time.perf_counter_ns()
            await sender.publish(channel, payload)
            message = None
            async with asyncio.timeout(10):
                while message is None:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if round_ >= WARMUP:
                latencies.append(time.perf_counter_ns() - t0)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await sender.aclose()
        await listener.aclose()
    return latencies


async def main(url: str, rounds: int, repeats: int = 3) -> None:
    """Measure each path `repeats` times in turn and print p50/p99 and the added latency."""
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    client_a, client_b = Redis.from_url(url), Redis.from_url(url)
    memory = MemoryEventBus()
    worker_a, worker_b = RedisEventBus(client_a, prefix), RedisEventBus(client_b, prefix)
    results: dict[str, list[int]] = {"memory bus": [], "raw PUBLISH": [], "redis bus A->B": []}
    try:
        for bus in (memory, worker_a, worker_b):
            await bus.start()
        for _ in range(repeats):
            for name in results:
                gc.collect()
                if name == "memory bus":
                    results[name] += await bus_hop(memory, memory, rounds // repeats)
                elif name == "raw PUBLISH":
                    results[name] += await raw_hop(url, rounds // repeats)
                else:
                    results[name] += await bus_hop(worker_a, worker_b, rounds // repeats)
    finally:
        for bus in (memory, worker_a, worker_b):
            await bus.close()
        keys = [key async for key in client_a.scan_iter(match=f"{prefix}*")]
        if keys:
            await client_a.delete(*keys)
        await client_a.aclose()
        await client_b.aclose()

    print(f"\none event, one subscriber, {len(results['memory bus'])} rounds per path")
    for name, latencies in results.items():
        p50, p99 = summary(latencies)
        print(f"  {name:<16} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")
    mem50, mem99 = summary(results["memory bus"])
    raw50, raw99 = summary(results["raw PUBLISH"])
    hop50, hop99 = summary(results["redis bus A->B"])
    verdict = "ok" if hop99 - mem99 <= TARGET_ADDED_P99_MS else "OVER"
    print(
        f"  added by the hop (redis bus - memory bus): p50 {hop50 - mem50:+.3f} ms"
        f"   p99 {hop99 - mem99:+.3f} ms   target p99 <= {TARGET_ADDED_P99_MS} ms: {verdict}"
    )
    print(
        f"  redis bus / raw PUBLISH: x{hop50 / raw50:.2f} p50   x{hop99 / raw99:.2f} p99"
        f"   (log append, Lua call and dispatch over the bare hop)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    asyncio.run(main(args.redis_url, args.rounds))
