"""The delivery worker: claims due outbox rows, hands each to its sender, records the outcome.

Claiming moves a row's `next_attempt_at` forward by a lease in one statement (with
`FOR UPDATE SKIP LOCKED` on PostgreSQL), so several workers never hold the same row at
once, and a worker that dies mid-attempt only delays the row until the lease lapses.
Failed attempts are retried on the configured schedule with jitter, or later when the
receiver sent `Retry-After`; after the last one the row is `failed`.

Deliveries run side by side up to a fixed number, so one slow receiver never holds up the
others, and each attempt has a deadline well inside the lease, so no other worker can
claim a row while its attempt is still running. A sender that makes progress in steps
(a reply sent in several parts) saves each step with `checkpoint`, which also renews the
lease.

Each attempt is logged under the row's `request_id`, the request whose change queued it:
one id leads from the access line to the generation and to every attempt at its callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat import logs
from relaychat.domain.ids import new_id
from relaychat.statuses import OutboxStatus
from relaychat.storage.models import OutboxAttempt, OutboxItem
from relaychat.storage.types import utcnow

logger = logging.getLogger(__name__)

# Longest wait a receiver's Retry-After can impose before the next attempt.
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass
class Attempt:
    """What one delivery attempt came to."""

    delivered: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    # No point retrying (410 Gone, a disabled endpoint, a refused target, …).
    give_up: bool = False
    # Replaces the stored payload: what is left of a send made in several parts.
    payload: str | None = None
    response_body: str | None = None


# Saves a new payload for the item being attempted and renews its lease; False when the
# claim was lost (the row was redelivered or cancelled meanwhile).
Checkpoint = Callable[[str], Awaitable[bool]]


class Sender(Protocol):
    """Delivers one kind of outbox item (`webhook`, `twilio`, …)."""

    async def send(self, item: OutboxItem, checkpoint: Checkpoint) -> Attempt:
        """Try once; never raise for a failed delivery, return it."""
        ...

    async def settle(
        self, session: AsyncSession, item: OutboxItem, attempt: Attempt, now: datetime
    ) -> None:
        """Kind-specific bookkeeping, in the transaction that records the attempt."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class Doorbell:
    """Wakes the worker when a commit enqueued something, instead of waiting for the poll."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        self._event.clear()


def next_delay(schedule: Sequence[float], attempts: int, retry_after: float | None) -> float | None:
    """Seconds until the next attempt after `attempts` tries; None when none is left."""
    if attempts >= len(schedule):
        return None
    # Jitter spreads the retries of many rows that failed together (one receiver down).
    delay = schedule[attempts] * random.uniform(1.0, 1.1)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds, from either of its forms (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - utcnow()).total_seconds())


class OutboxWorker:
    """Delivers the outbox of this database; one per server process."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        senders: dict[str, Sender],
        *,
        worker_id: str,
        schedule: Sequence[float],
        doorbell: Doorbell | None = None,
        poll_seconds: float = 1.0,
        lease_seconds: float = 60.0,
        concurrency: int = 16,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.senders = senders
        self.worker_id = worker_id
        self.schedule = list(schedule)
        self.doorbell = doorbell or Doorbell()
        self.poll_seconds = poll_seconds
        self.lease = timedelta(seconds=lease_seconds)
        # An attempt ends well before its lease lapses, so nobody else can claim it meanwhile.
        self.attempt_seconds = lease_seconds * 0.75
        self.concurrency = concurrency
        # Injected so tests can travel in time through a retry schedule of hours.
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="outbox-worker")

    async def close(self, grace_seconds: float = 20.0) -> None:
        """Stop claiming; let attempts in flight finish (they are recorded, not repeated).
        One cut short is sent again once its lease lapses."""
        self._closing = True
        self.doorbell.ring()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=grace_seconds)
            for task in self._inflight:
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
        for sender in self.senders.values():
            await sender.aclose()

    async def _loop(self) -> None:
        while not self._closing:
            free = self.concurrency - len(self._inflight)
            claimed: list[OutboxItem] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except Exception:
                    logger.warning("claiming outbox rows failed", exc_info=True)
            for item in claimed:
                task = asyncio.create_task(self._deliver(item), name=f"outbox-{item.id}")
                self._inflight.add(task)
                task.add_done_callback(self._finished)
            if len(claimed) < free or not claimed:
                await self.doorbell.wait(self.poll_seconds)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.doorbell.ring()  # a free slot: claim again without waiting for the poll

    async def run_once(self) -> int:
        """Claim the due rows and attempt each once; return how many were attempted."""
        items = await self._claim(self.concurrency)
        if items:
            await asyncio.gather(*(self._deliver(item) for item in items))
        return len(items)

    async def _claim(self, limit: int) -> list[OutboxItem]:
        now = self.clock()
        due = (
            select(OutboxItem.id)
            .where(OutboxItem.status == OutboxStatus.PENDING, OutboxItem.next_attempt_at <= now)
            .order_by(OutboxItem.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self.sessionmaker() as session:
            claimed = await session.scalars(
                update(OutboxItem)
                .where(OutboxItem.id.in_(due.scalar_subquery()))
                .values(next_attempt_at=now + self.lease, claimed_by=self.worker_id)
                .returning(OutboxItem),
                execution_options={"synchronize_session": False},
            )
            items = list(claimed.all())
            await session.commit()
        return items

    def _still_ours(self, item: OutboxItem) -> tuple[ColumnElement[bool], ...]:
        """The row, as long as this worker's claim on it holds (not redelivered, cancelled or
        claimed again after the lease lapsed)."""
        return (
            OutboxItem.id == item.id,
            OutboxItem.claimed_by == self.worker_id,
            OutboxItem.status == OutboxStatus.PENDING,
        )

    def _checkpoint(self, item: OutboxItem) -> Checkpoint:
        async def save(payload: str) -> bool:
            async with self.sessionmaker() as session:
                result = await session.execute(
                    update(OutboxItem)
                    .where(*self._still_ours(item))
                    .values(payload=payload, next_attempt_at=self.clock() + self.lease)
                )
                await session.commit()
            item.payload = payload
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return save

    async def _deliver(self, item: OutboxItem) -> None:
        with logs.working(item.request_id, user_id=item.user_id):
            await self._deliver_logged(item)

    async def _deliver_logged(self, item: OutboxItem) -> None:
        sender = self.senders.get(item.kind)
        started = time.perf_counter()
        if sender is None:
            attempt = Attempt(False, error=f"no sender for kind {item.kind!r}", give_up=True)
        else:
            try:
                async with asyncio.timeout(self.attempt_seconds):
                    attempt = await sender.send(item, self._checkpoint(item))
            except TimeoutError:
                attempt = Attempt(False, error=f"no outcome within {self.attempt_seconds:g} s")
            except Exception as exc:  # a sender bug must not wedge the row
                logger.exception("outbox sender %s failed on %s", item.kind, item.id)
                attempt = Attempt(False, error=f"internal error: {type(exc).__name__}")
        duration_ms = (time.perf_counter() - started) * 1000
        _log_attempt(item, attempt, duration_ms)
        try:
            await self._record(item, attempt, sender, duration_ms)
        except Exception:
            # Most likely the sender's bookkeeping: record the attempt without it, so the
            # row moves on instead of being sent again each time its lease lapses.
            logger.exception("recording outbox attempt %s failed; recording it plainly", item.id)
            await self._record(item, attempt, None, duration_ms)

    async def _record(
        self, item: OutboxItem, attempt: Attempt, sender: Sender | None, duration_ms: float
    ) -> None:
        now = self.clock()
        attempts = item.attempts + 1
        values: dict[str, object] = {
            "attempts": attempts,
            "last_attempt_at": now,
            "last_status_code": attempt.status_code,
            "last_error": None if attempt.delivered else attempt.error,
            "claimed_by": None,
        }
        if attempt.payload is not None:
            values["payload"] = attempt.payload
        if attempt.delivered:
            values.update(status=OutboxStatus.DELIVERED, delivered_at=now)
        else:
            delay = (
                None
                if attempt.give_up
                else next_delay(self.schedule, attempts, attempt.retry_after)
            )
            if delay is None:
                values["status"] = OutboxStatus.FAILED
            else:
                values["next_attempt_at"] = now + timedelta(seconds=delay)
        async with self.sessionmaker() as session:
            result = await session.execute(
                update(OutboxItem).where(*self._still_ours(item)).values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return
            session.add(
                OutboxAttempt(
                    id=new_id(),
                    item_id=item.id,
                    attempted_at=now,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    duration_ms=round(duration_ms, 3),
                    response_body=attempt.response_body,
                )
            )
            if sender is not None:
                item.attempts = attempts
                await sender.settle(session, item, attempt, now)
            await session.commit()


def _log_attempt(item: OutboxItem, attempt: Attempt, duration_ms: float) -> None:
    """One line per attempt: a delivery at info, a failure (to be retried or not) at warning."""
    outcome = "delivered" if attempt.delivered else f"failed: {attempt.error or 'no reason'}"
    logger.log(
        logging.INFO if attempt.delivered else logging.WARNING,
        "outbox %s %s %s attempt %d %s (status %s, %.1fms)",
        item.kind,
        item.event_type,
        item.id,
        item.attempts + 1,
        outcome,
        attempt.status_code,
        duration_ms,
    )
