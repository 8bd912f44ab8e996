"""PostgreSQL: a pooled connection that sat idle is pinged before use, and replaced if the
server dropped it; one used moments ago is handed out without a ping."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from relaychat.storage import db
from relaychat.storage.db import create_engine
from tests.support.backends import DATABASE_ENV, required_url


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    made = create_engine(required_url(DATABASE_ENV), pool_size=1, max_overflow=0)
    try:
        yield made
    finally:
        await made.dispose()


async def pooled_pid(engine: AsyncEngine) -> int:
    """The server process of the pool's one connection, which goes back to the pool."""
    async with engine.connect() as conn:
        pid: int = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return pid


async def drop_from_the_server(engine: AsyncEngine, pid: int) -> None:
    other = create_engine(required_url(DATABASE_ENV))
    try:
        async with other.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await other.dispose()


async def test_an_idle_connection_the_server_dropped_is_replaced(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # every pooled one counts as idle
    dropped = await pooled_pid(engine)
    await drop_from_the_server(engine, dropped)

    assert await pooled_pid(engine) != dropped


async def test_a_connection_used_moments_ago_is_not_pinged(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    dropped = await pooled_pid(engine)
    await drop_from_the_server(engine, dropped)

    # Not pinged, the dead connection fails its statement, as a disconnect...
    with pytest.raises(DBAPIError) as failed:
        await pooled_pid(engine)
    assert failed.value.connection_invalidated
    # ...which makes the pool replace it.
    assert await pooled_pid(engine) != dropped
