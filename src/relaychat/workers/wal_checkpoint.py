"""SQLite's WAL checkpoints in the background, not inside a request's commit.

By default SQLite checkpoints in whichever commit finds the write-ahead log over 1,000
pages: that commit copies the pages into the database and syncs it before it returns, and
with group commit it is a whole batch of external messages that waits (the slowest commits
bench.gateway saw, tens of ms, in a p99 that was many times the p50). The server's engine
turns that off (`create_engine(..., background_checkpoints=True)`), and this task
checkpoints every `interval` seconds instead, on a pooled connection in aiosqlite's thread.
A PASSIVE checkpoint takes no write lock: writers go on while it copies and syncs.

PostgreSQL has its own checkpointer; there the task does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import cast

from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 1.0


class WalCheckpointer:
    """Checkpoints the SQLite database every `interval` seconds while running."""

    def __init__(self, engine: AsyncEngine, *, interval: float = CHECKPOINT_SECONDS) -> None:
        self.engine = engine
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        # What the latest checkpoint returned (see `checkpoint`).
        self.last: tuple[int, int, int] | None = None

    def start(self) -> None:
        if self.engine.dialect.name == "sqlite" and self._task is None:
            self._task = asyncio.create_task(self._run(), name="sqlite-wal-checkpoint")

    async def close(self) -> None:
        """Stop after the checkpoint under way, if any (never cut inside it), then run a
        last one, so a stopped server leaves a short log."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing.set()
        await task
        await self.checkpoint()

    async def checkpoint(self) -> tuple[int, int, int] | None:
        """One PASSIVE checkpoint: (busy, pages in the log, pages checkpointed), or None
        when it failed (logged; the next one tries again)."""
        try:
            async with self.engine.connect() as conn:
                row = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")).one()
                await conn.commit()
        except Exception:
            logger.exception("SQLite WAL checkpoint failed")
            return None
        busy, log, done = cast(tuple[int, int, int], tuple(row))
        self.last = (busy, log, done)
        return self.last

    async def _run(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._closing.wait()
            if not self._closing.is_set():
                await self.checkpoint()
