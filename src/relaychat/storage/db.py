"""Engines and sessions for the embedded SQLite database or PostgreSQL.

Sessions also run awaited callbacks after their transaction commits (`after_commit`):
what must only happen once a change is durable (telling clients about it) is queued on
the session by the code that makes the change, and nobody has to remember to do it.

How: SQLAlchemy's `after_commit` event is synchronous, while the work is async. So the
sync hook only moves the session's queued callbacks to a "ready" list (and the end of a
transaction that did not commit drops them), and `Session` awaits the ready ones right
after its `commit()` returns, in the order they were queued, once. That is before the
caller's next line, so a route that commits has published before it answers, exactly as
when each route published by hand; an error raised by a callback comes out of `commit()`
(the data stays committed) and the callbacks after it are dropped. Scheduling the work
on the loop from the sync hook instead would lose that ordering and those errors.
A transaction committed by `async with session.begin()` runs its callbacks when the
session closes. Savepoints are not tracked: what is queued inside one counts as part of
the outer transaction.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session as SyncSession
from sqlalchemy.orm import SessionTransaction

from relaychat.storage.files import private_sqlite
from relaychat.storage.sqlite_statements import use_one_trip_cursors


def create_engine(url: str, *, background_checkpoints: bool = False, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout on every connection.

    `background_checkpoints`: no SQLite commit checkpoints the write-ahead log by itself;
    the owner runs `relaychat.workers.wal_checkpoint.WalCheckpointer` instead (the server).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_async_engine(url, **kwargs)
        if not kwargs.get("pool_pre_ping"):
            ping_idle_connections(engine)
        return engine

    if (
        parsed.database
        and parsed.database != ":memory:"
        and not parsed.database.startswith("file:")
    ):
        private_sqlite(Path(parsed.database))
    engine = create_async_engine(url, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        use_one_trip_cursors(dbapi_connection)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        if background_checkpoints:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    return engine


# A pooled connection unused for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_SINCE = "relaychat_idle_since"


def ping_idle_connections(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use if it sat in the pool for a while; replace it
    if the ping fails (the server restarted, a proxy dropped it).

    SQLAlchemy's `pool_pre_ping` pings at every checkout, and asyncpg's ping is three round
    trips (BEGIN, a query, ROLLBACK): a request that opens three sessions waited for nine
    more round trips, each behind everything else the event loop had to do; under load
    that was most of a stored call's time to its first token. A connection that was in use
    moments ago is as good as the ping would find it; one the server dropped while in use
    fails its statement as a disconnect, which makes the pool replace every connection.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return  # new, or used moments ago
        try:
            sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool's signal to discard this connection and check out another.
            raise DisconnectionError("a pooled connection failed its ping") from exc


AfterCommit = Callable[[], Awaitable[None]]

# session.info keys: callbacks queued in the open transaction, and those whose
# transaction committed, waiting for `Session` to await them.
_PENDING = "after_commit_pending"
_READY = "after_commit_ready"


class Session(AsyncSession):
    """An AsyncSession that awaits its `after_commit` callbacks once it has committed."""

    async def commit(self) -> None:
        await super().commit()
        await self._run_committed()

    # Rolling back or closing a session whose transaction had not begun yet ends no
    # transaction, so the hooks below do not see it: forget what was queued here too.
    async def rollback(self) -> None:
        try:
            await super().rollback()
        finally:
            self.info.pop(_PENDING, None)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self.info.pop(_PENDING, None)
            await self._run_committed()  # committed by `async with session.begin()`

    async def _run_committed(self) -> None:
        ready: list[AfterCommit] | None = self.info.pop(_READY, None)
        for callback in ready or ():
            await callback()


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Await `callback` once the session's transaction commits; forget it if it does not."""
    if not isinstance(session, Session):
        # A plain AsyncSession never awaits them: refuse rather than lose them silently.
        raise TypeError(f"after_commit needs a {__name__}.Session, not {type(session).__name__}")
    session.info.setdefault(_PENDING, []).append(callback)


def last_after_commit(session: AsyncSession) -> AfterCommit | None:
    """The callback queued last on the session's transaction, if any (to add to it rather
    than queue another: `domain.publishing` sends consecutive events together)."""
    pending: list[AfterCommit] | None = session.info.get(_PENDING)
    return pending[-1] if pending else None


@event.listens_for(SyncSession, "after_commit")
def _committed(session: SyncSession) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: the outer transaction decides
    pending = session.info.pop(_PENDING, None)
    if pending:
        session.info.setdefault(_READY, []).extend(pending)


@event.listens_for(SyncSession, "after_transaction_end")
def _ended(session: SyncSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        # Whatever is still pending was rolled back, or closed without a commit.
        session.info.pop(_PENDING, None)


def create_sessionmaker(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (we render them afterwards)
    and run `after_commit` callbacks; `info` is copied into every session's `info`."""
    maker = async_sessionmaker(engine, class_=Session, expire_on_commit=False, info=info or {})
    # Callers need only the AsyncSession interface; `after_commit` checks the class.
    return cast("async_sessionmaker[AsyncSession]", maker)


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session inside one transaction: committed on success, rolled back on any error."""
    async with sessionmaker() as session, session.begin():
        yield session


async def ping(engine: AsyncEngine) -> None:
    """Raise when the database cannot answer a trivial query."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
