"""Event bus fixtures: every bus test runs on the memory bus and on Redis."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from relaychat.realtime import EventBus, MemoryEventBus, RedisEventBus
from tests.backends import REDIS_ENV, REDIS_PREFIX_ROOT, required_url

BusFactory = Callable[..., Awaitable[EventBus]]
_prefix_counter = itertools.count()


async def _factory(redis_url: str | None) -> AsyncIterator[BusFactory]:
    """Build started buses (all on one key prefix, so Redis ones act as workers of one app)."""
    prefix = f"{REDIS_PREFIX_ROOT}rt{next(_prefix_counter)}:"
    buses: list[EventBus] = []
    clients: list[Redis] = []

    async def make(**options: Any) -> EventBus:
        bus: EventBus
        if redis_url is None:
            bus = MemoryEventBus(**options)
        else:
            # A client per bus, as separate worker processes would have.
            client = Redis.from_url(redis_url)
            clients.append(client)
            bus = RedisEventBus(client, prefix, **options)
        buses.append(bus)
        await bus.start()
        return bus

    try:
        yield make
    finally:
        for bus in buses:
            await bus.close()
        if clients:
            keys = [key async for key in clients[0].scan_iter(match=f"{prefix}*")]
            if keys:
                await clients[0].delete(*keys)
        for client in clients:
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """A factory of started buses of the implementation under test."""
    url = required_url(REDIS_ENV) if request.param == "redis" else None
    async for factory in _factory(url):
        yield factory


@pytest.fixture
async def bus(make_bus: BusFactory) -> EventBus:
    """A started bus with default options."""
    return await make_bus()


@pytest.fixture
async def make_redis_bus() -> AsyncIterator[BusFactory]:
    """A factory of started Redis buses sharing a prefix: several workers of one deployment."""
    async for factory in _factory(required_url(REDIS_ENV)):
        yield factory
