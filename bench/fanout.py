"""Fan-out of one event to 100 and 1,000 subscribers of one user, against bare asyncio queues.

Latency is measured from just before `publish` to each subscriber receiving the frame.
The baseline encodes the same event once and puts it into one `asyncio.Queue` per
subscriber task, which is the least any in-process fan-out can do.

    uv run python -m bench.fanout [--redis-url redis://127.0.0.1:6379/0] [--no-redis]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bench.common import percentile
from relaychat.realtime import EventBus, MemoryEventBus, RedisEventBus
from relaychat.realtime.bus import encode_body
from relaychat.realtime.events import MessageDelta
from relaychat.realtime.sse import with_id

USER = "bench-user"
EVENT = MessageDelta(
    conversation_id=str(uuid.uuid4()),
    message_id=str(uuid.uuid4()),
    delta="a typical streamed chunk of a dozen words or so, ",
)
TARGET_P99_MS = {100: 2.0, 1000: 15.0}
ROUNDS = {100: 400, 1000: 100}
WARMUP = 10

# One round: publish once, wait until every subscriber has it; returns latencies in ns.
Trial = Callable[[int, int], Awaitable[list[int]]]


def summary(latencies_ns: Sequence[int]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ms = [value / 1e6 for value in latencies_ns]
    return percentile(ms, 0.50), percentile(ms, 0.99)


async def queue_fanout(subscribers: int, rounds: int) -> list[int]:
    """Baseline: encode once, `put_nowait` into one queue per consumer task."""
    queues: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in range(subscribers)]
    latencies: list[int] = []
    state = {"t0": 0, "left": 0}
    all_in = asyncio.Event()

    async def consume(queue: asyncio.Queue[bytes]) -> None:
        while True:
            await queue.get()
            latencies.append(time.perf_counter_ns() - state["t0"])
            state["left"] -= 1
            if state["left"] == 0:
                all_in.set()

    tasks = [asyncio.create_task(consume(queue)) for queue in queues]
    await asyncio.sleep(0)
    try:
        for round_ in range(WARMUP + rounds):
            if round_ == WARMUP:
                latencies.clear()
            state["left"] = subscribers
            all_in.clear()
            state["t0"] = time.perf_counter_ns()
            frame = with_id(f"{round_}-0", encode_body(EVENT))
            for queue in queues:
                queue.put_nowait(frame)
            await all_in.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


async def bus_fanout(bus: EventBus, subscribers: int, rounds: int) -> list[int]:
    """The bus: one publish, `subscribers` subscriptions of the same user."""
    subscriptions = [bus.subscribe(USER) for _ in range(subscribers)]
    for subscription in subscriptions:
        await subscription.__aenter__()
    latencies: list[int] = []
    state = {"t0": 0, "left": 0}
    all_in = asyncio.Event()

    async def consume(index: int) -> None:
        async for _ in subscriptions[index]:
            latencies.append(time.perf_counter_ns() - state["t0"])
            state["left"] -= 1
            if state["left"] == 0:
                all_in.set()

    tasks = [asyncio.create_task(consume(i)) for i in range(subscribers)]
    await asyncio.sleep(0)
    try:
        for round_ in range(WARMUP + rounds):
            if round_ == WARMUP:
                latencies.clear()
            state["left"] = subscribers
            all_in.clear()
            state["t0"] = time.perf_counter_ns()
            await bus.publish(USER, EVENT)
            async with asyncio.timeout(30):
                await all_in.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for subscription in subscriptions:
            await subscription.__aexit__(None, None, None)
    return latencies


async def interleaved(
    trials: dict[str, Trial], subscribers: int, repeats: int = 3
) -> dict[str, list[int]]:
    """Run each trial `repeats` times in turn, so machine noise hits them alike."""
    pooled: dict[str, list[int]] = {name: [] for name in trials}
    for _ in range(repeats):
        for name, trial in trials.items():
            gc.collect()
            pooled[name].extend(await trial(subscribers, ROUNDS[subscribers] // repeats))
    return pooled


def report(subscribers: int, results: dict[str, list[int]]) -> None:
    """Print p50/p99 per trial and the ratio of each bus to the queue baseline."""
    base50, base99 = summary(results["baseline"])
    print(f"\n{subscribers} subscribers, {len(results['baseline'])} deliveries per trial")
    for name, latencies in results.items():
        p50, p99 = summary(latencies)
        line = f"  {name:<24} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms"
        if name != "baseline":
            verdict = "ok" if p99 <= TARGET_P99_MS[subscribers] else "OVER"
            line += (
                f"   x{p50 / base50:5.2f} / x{p99 / base99:5.2f} baseline"
                f"   target p99 <= {TARGET_P99_MS[subscribers]} ms: {verdict}"
            )
        print(line)


async def main(redis_url: str | None) -> None:
    """Measure fan-out on the memory bus (and the Redis bus, if reachable)."""
    memory = MemoryEventBus()
    await memory.start()
    redis: Redis | None = None
    redis_bus: RedisEventBus | None = None
    if redis_url:
        redis = Redis.from_url(redis_url)
        try:
            await redis.ping()
            redis_bus = RedisEventBus(redis, f"bench:{uuid.uuid4().hex[:8]}:")
            await redis_bus.start()
        except (RedisConnectionError, OSError) as exc:
            print(f"Redis at {redis_url} unreachable ({exc}); memory bus only")
            redis_bus = None
    try:
        for subscribers in (100, 1000):
            trials: dict[str, Trial] = {
                "baseline": queue_fanout,
                "memory bus": partial(bus_fanout, memory),
            }
            if redis_bus is not None:
                trials["redis bus (same worker)"] = partial(bus_fanout, redis_bus)
            report(subscribers, await interleaved(trials, subscribers))
    finally:
        await memory.close()
        if redis is not None:
            if redis_bus is not None:
                await redis_bus.close()
                keys = [key async for key in redis.scan_iter(match=f"{redis_bus.key_prefix}*")]
                if keys:
                    await redis.delete(*keys)
            await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-redis", action="store_true", help="measure the memory bus only")
    args = parser.parse_args()
    asyncio.run(main(None if args.no_redis else args.redis_url))
