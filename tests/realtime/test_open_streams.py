"""Open event streams counted per worker and summed over the workers alive, in all or per
user: in-process without Redis, through Redis with it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from relaychat.realtime.open_streams import OpenStreams
from tests.support.backends import REDIS_ENV, REDIS_PREFIX_ROOT, delete_keys, required_url

Census = Callable[..., OpenStreams]


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(required_url(REDIS_ENV))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def census(redis: Redis) -> AsyncIterator[Census]:
    """Workers of one deployment (one key prefix), started; closed at the end."""
    prefix = f"{REDIS_PREFIX_ROOT}streams-{uuid.uuid4().hex[:8]}:"
    made: list[OpenStreams] = []

    def make(worker_id: str, **options: float) -> OpenStreams:
        made.append(OpenStreams(redis, prefix, worker_id, **options))
        return made[-1]

    try:
        yield make
    finally:
        for worker in made:
            await worker.close()
        await delete_keys(required_url(REDIS_ENV), prefix)


async def eventually(worker: OpenStreams, expected: int, user_id: str | None = None) -> None:
    for _ in range(100):
        if await worker.total(user_id) == expected:
            return
        await asyncio.sleep(0.02)
    assert await worker.total(user_id) == expected


async def test_alone_a_process_counts_its_own() -> None:
    worker = OpenStreams(None, "unused:", "w1")
    with worker.counted("ann"), worker.counted("ann"), worker.counted("bob"):
        assert (await worker.total(), await worker.total("ann"), await worker.total("bob")) == (
            3,
            2,
            1,
        )
    assert (await worker.total(), await worker.total("ann")) == (0, 0)
    assert worker.by_user == {}


async def test_workers_are_summed_per_user(census: Census) -> None:
    a, b = census("worker-a"), census("worker-b")
    await a.start()
    await b.start()
    with contextlib.ExitStack() as streams:
        streams.enter_context(a.counted("ann"))
        streams.enter_context(b.counted("ann"))
        streams.enter_context(b.counted("bob"))
        await eventually(a, 3)
        await eventually(b, 2, "ann")
        await eventually(a, 1, "bob")
        assert await a.total("nobody") == 0
    await eventually(b, 0)
    await eventually(a, 0, "ann")


async def test_a_closed_worker_leaves_at_once_and_a_dead_one_with_its_lease(
    census: Census,
) -> None:
    a = census("worker-a")
    closed = census("worker-closed")
    dead = census("worker-dead", lease_seconds=0.3, report_seconds=10)
    for worker in (a, closed, dead):
        await worker.start()
    with closed.counted("ann"), dead.counted("ann"):
        await eventually(a, 2)
        await closed.close()
        assert await a.total() == 1
        # A worker killed outright: it stops reporting, and nothing withdraws it.
        reporter = dead._reporter
        assert reporter is not None
        reporter.cancel()
        await eventually(a, 0)
