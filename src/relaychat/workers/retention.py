"""The retention sweeper: deletes what has served its purpose, so tables stop growing.

What goes, each kind after its own period (0 keeps it forever):

- outbox rows that are settled (`delivered`, `failed`, `cancelled`), with their attempts,
  once they have been settled for `outbox_days`;
- idempotency records past their expiry (they are never replayed after it);
- audit rows older than `audit_days`.

Rows go in batches, one short transaction each, so a large backlog never holds a lock
(SQLite's write lock above all) for long; on PostgreSQL the batch skips rows another
host's sweeper holds. Every process runs a sweeper; they do not get in each other's way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.statuses import OutboxStatus
from relaychat.storage.audit_hours import forget_hours_before
from relaychat.storage.models import AuditEvent, IdempotencyRecord, OutboxAttempt, OutboxItem
from relaychat.storage.types import utcnow

logger = logging.getLogger(__name__)

SETTLED_OUTBOX = (OutboxStatus.DELIVERED, OutboxStatus.FAILED, OutboxStatus.CANCELLED)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of row is kept (days; 0 keeps it forever) and the batch size."""

    outbox_days: float = 7.0
    audit_days: float = 90.0
    batch_size: int = 1000


@dataclass(frozen=True)
class Purged:
    """How many rows one sweep deleted, by kind."""

    outbox: int = 0
    outbox_attempts: int = 0
    idempotency: int = 0
    audit: int = 0


class RetentionSweeper:
    """Sweeps every `interval_seconds` (the first one too); one per server process."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policy: RetentionPolicy,
        *,
        interval_seconds: float = 3600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policy = policy
        self.interval_seconds = interval_seconds
        # Injected so tests can judge rows as old without waiting for them to age.
        self.clock = clock
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._loop(), name="retention-sweeper")

    async def close(self) -> None:
        """Stop between batches; what a sweep left is taken by the next process's."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        # The first sweep waits an interval too: many workers starting together do not all
        # sweep at once, and a restart loop does not turn into a sweep loop.
        while not await self._stopped_within(self.interval_seconds):
            try:
                purged = await self.run_once()
            except Exception:
                logger.warning("retention sweep failed", exc_info=True)
            else:
                if any(vars(purged).values()):
                    logger.info("retention sweep deleted %s", vars(purged))

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        return self._stop.is_set()

    async def run_once(self) -> Purged:
        """Delete everything due now, batch by batch; how many rows went."""
        now = self.clock()
        outbox = attempts = 0
        if self.policy.outbox_days > 0:
            cutoff = now - timedelta(days=self.policy.outbox_days)
            while not self._stop.is_set():
                picked, items, item_attempts = await self._purge_outbox_batch(cutoff)
                outbox, attempts = outbox + items, attempts + item_attempts
                if picked < self.policy.batch_size:
                    break
        idempotency = await self._purge(
            IdempotencyRecord, IdempotencyRecord.id, IdempotencyRecord.expires_at <= now
        )
        audit = 0
        if self.policy.audit_days > 0:
            cutoff = now - timedelta(days=self.policy.audit_days)
            audit = await self._purge(AuditEvent, AuditEvent.id, AuditEvent.created_at < cutoff)
            # Their hours' counts go too; the hour holding the cutoff stays (partly stale:
            # the dashboard reads that edge from the rows).
            async with self.sessionmaker() as session:
                await forget_hours_before(session, cutoff)
                await session.commit()
        return Purged(outbox, attempts, idempotency, audit)

    async def _purge(self, model: type[Any], key: Any, condition: ColumnElement[bool]) -> int:
        """Delete the rows of `model` matching `condition`, a batch per transaction."""
        total = 0
        while not self._stop.is_set():
            due = (
                select(key)
                .where(condition)
                .limit(self.policy.batch_size)
                .with_for_update(skip_locked=True)
            )
            async with self.sessionmaker() as session:
                result = await session.execute(
                    delete(model).where(key.in_(due.scalar_subquery())),
                    execution_options={"synchronize_session": False},
                )
                await session.commit()
            deleted: int = result.rowcount  # type: ignore[attr-defined]
            total += deleted
            if deleted < self.policy.batch_size:
                break
            await asyncio.sleep(0)  # let requests in between batches
        return total

    async def _purge_outbox_batch(self, cutoff: datetime) -> tuple[int, int, int]:
        """One batch of settled outbox rows with their attempts: how many rows were picked,
        and how many rows and attempts were deleted."""
        # Settled when delivered, else when last attempted (or cancelled before any).
        settled_at = func.coalesce(
            OutboxItem.delivered_at, OutboxItem.last_attempt_at, OutboxItem.created_at
        )
        settled = and_(OutboxItem.status.in_(SETTLED_OUTBOX), settled_at < cutoff)
        due = (
            select(OutboxItem.id)
            .where(settled)
            .limit(self.policy.batch_size)
            .with_for_update(skip_locked=True)
        )
        async with self.sessionmaker() as session:
            ids = list((await session.scalars(due)).all())
            if not ids:
                return 0, 0, 0
            # Checked again in the deletes: on SQLite the select above takes no lock, and a
            # row may have been sent again (redelivered) since.
            still_due = and_(OutboxItem.id.in_(ids), settled)
            attempts = await session.execute(
                delete(OutboxAttempt).where(
                    OutboxAttempt.item_id.in_(select(OutboxItem.id).where(still_due))
                ),
                execution_options={"synchronize_session": False},
            )
            items = await session.execute(
                delete(OutboxItem).where(still_due),
                execution_options={"synchronize_session": False},
            )
            await session.commit()
        await asyncio.sleep(0)
        deleted: tuple[int, int] = (items.rowcount, attempts.rowcount)  # type: ignore[attr-defined]
        return len(ids), *deleted
