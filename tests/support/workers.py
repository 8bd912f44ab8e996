"""A second worker of the same deployment, for tests of what must reach every worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from relaychat.services import Services
from relaychat.settings import Settings
from tests.support.backends import Backend


@asynccontextmanager
async def second_worker(
    services: Services, backend: Backend, settings: Settings
) -> AsyncIterator[Services]:
    """Services sharing the database and the event bus: on Redis a process of their own
    would have; on the in-process bus, which no other process can share, `services`."""
    if backend.redis_url is None:
        yield services
        return
    other = Services.build(settings, engine=backend.engine)
    await other.start()
    try:
        yield other
    finally:
        await other.close()
