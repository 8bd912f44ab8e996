"""Event bus fixtures: every bus test runs on the memory bus and on Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from relaychat.realtime import EventBus
from tests.support.backends import REDIS_ENV, required_url
from tests.support.realtime import BusFactory, bus_factory


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """A factory of started buses of the implementation under test."""
    url = required_url(REDIS_ENV) if request.param == "redis" else None
    async for factory in bus_factory(url):
        yield factory


@pytest.fixture
async def bus(make_bus: BusFactory) -> EventBus:
    """A started bus with default options."""
    return await make_bus()


@pytest.fixture
async def make_redis_bus() -> AsyncIterator[BusFactory]:
    """A factory of started Redis buses sharing a prefix: several workers of one deployment."""
    async for factory in bus_factory(required_url(REDIS_ENV)):
        yield factory
