"""Audit rows written in batches by one writer task, so a flood of requests costs one
transaction per batch instead of one per request."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.storage.audit_hours import add_audit_hours
from relaychat.storage.models import AuditEvent
from relaychat.storage.types import utcnow

logger = logging.getLogger(__name__)

_AUDIT_EVENTS = cast(Table, AuditEvent.__table__)
# One compiled statement for every batch: an executemany of the rows' values. Through the
# ORM (objects added, then flushed) a batch of one cost a unit of work and a compilation per
# row, ~4% of a `store: false` call's CPU (py-spy, bench.openai_api).
_INSERT = insert(_AUDIT_EVENTS)
_COLUMNS = tuple(column.key for column in _AUDIT_EVENTS.columns)


class AuditWriter:
    """Queues audit rows and inserts them together; `flush()` waits until all are stored.

    On a hard crash the rows of the last batch (at most `interval` seconds) can be lost;
    a clean shutdown writes everything.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        interval: float = 0.05,
        max_batch: int = 500,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.interval = interval
        self.max_batch = max_batch
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    def add(self, event: AuditEvent) -> None:
        """Queue one row (never blocks the request)."""
        self.add_values({column: getattr(event, column) for column in _COLUMNS})

    def add_values(self, values: dict[str, Any]) -> None:
        """Queue one row given by its column values, every column named
        (`domain.access.audit.audit_values`); never blocks the request."""
        self._pending.append(values)
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every queued row is stored."""
        if self._task is None:
            await self._write_all()
            return
        self._wake.set()
        await self._idle.wait()

    async def close(self) -> None:
        """Write every queued row, then stop; the writer is let finish rather than
        cancelled, so no batch's transaction is cut in half."""
        if self._task is not None:
            task, self._task = self._task, None
            self._closing = True
            self._wake.set()
            await task
        await self._write_all()

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            if not self._closing:
                await asyncio.sleep(self.interval)  # let a batch gather
            await self._write_all()

    async def _write_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                async with self.sessionmaker() as session:
                    for values in batch:
                        values["created_at"] = values["created_at"] or utcnow()
                    await session.execute(_INSERT, batch)
                    await add_audit_hours(session, batch)
                    await session.commit()
            except Exception:
                logger.exception("could not store %d audit rows", len(batch))
        self._idle.set()
