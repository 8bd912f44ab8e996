"""The scheduler: turns due schedules into runs, claims due runs, posts them.

Every server process runs one. Two steps a tick, each its own short transaction:

1. Plan: due schedules (`next_run_at` passed) are locked with `FOR UPDATE SKIP LOCKED` on
   PostgreSQL; for each, the runs of its due occurrences are inserted and `next_run_at`
   moves on, together, so an occurrence becomes one run row whichever process saw it
   (and `(schedule_id, occurrence_at)` is unique besides).
2. Claim and post: due runs are claimed as the outbox claims its rows, by moving
   `lease_until` forward in one statement (with `SKIP LOCKED`); each is posted
   (domain.schedules.runs), which turns it `posted` in the transaction that stores its
   message. A process killed mid-run leaves the run to be claimed again once its lease
   lapses: it is tried once more, and never posts twice. One interrupted twice fails.

On SQLite there is one process, and `FOR UPDATE` is left out; the statements are atomic.
Time comes from the process's Clock, so tests move it instead of sleeping.

A run has no HTTP request behind it: its own id stands in for one, so its log lines, its
reply's generation and the callbacks they queue all carry `request_id` = the run's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat import logs
from relaychat.clock import Clock
from relaychat.domain.ids import new_id
from relaychat.domain.messaging.chat import ChatEngine
from relaychat.domain.schedules.planning import plan_due
from relaychat.domain.schedules.runs import Outcome, post_run
from relaychat.domain.schedules.schedules import recurrence_of
from relaychat.errors import AppError
from relaychat.statuses import ScheduleRunStatus
from relaychat.storage.models import Schedule, ScheduleRun

logger = logging.getLogger(__name__)

# A run is tried at most this often: once, and once more if its scheduler died mid-run.
MAX_ATTEMPTS = 2
BATCH = 50


class Scheduler:
    """Runs the schedules of this database; one per server process."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        chat: ChatEngine,
        *,
        worker_id: str,
        clock: Clock,
        poll_seconds: float = 1.0,
        lease_seconds: float = 60.0,
        late_after_seconds: float = 60.0,
        phone_region: str = "US",
    ) -> None:
        self.sessionmaker = sessionmaker
        self.chat = chat
        self.worker_id = worker_id
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.late_after = timedelta(seconds=late_after_seconds)
        self.phone_region = phone_region
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    def wake(self) -> None:
        """Look now (a run was asked for), instead of at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        """Stop after the tick in progress (a run cut short is retried after its lease)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while not self._closing:
            try:
                await self.run_once()
            except Exception:
                logger.warning("a scheduler tick failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    async def run_once(self) -> list[Outcome]:
        """One tick: plan the due schedules, give up on runs interrupted twice, and post
        every due run this scheduler can claim; the outcomes of the runs it posted."""
        await self.plan()
        await self.expire()
        outcomes: list[Outcome] = []
        while True:
            runs = await self.claim(BATCH)
            if not runs:
                break
            outcomes += await asyncio.gather(*(self._post(run) for run in runs))
        return outcomes

    async def _post(self, run: ScheduleRun) -> Outcome:
        with logs.working(run.id):
            return await self._post_logged(run)

    async def _post_logged(self, run: ScheduleRun) -> Outcome:
        try:
            return await post_run(
                self.sessionmaker,
                self.chat,
                run,
                worker_id=self.worker_id,
                now=self.clock.now(),
                phone_region=self.phone_region,
            )
        except Exception as exc:
            # Not a refusal (those fail the run): the database, most likely. The run keeps
            # its claim, and is tried once more when the lease lapses.
            logger.exception("posting schedule run %s failed", run.id)
            return Outcome(None, error=f"internal error: {type(exc).__name__}")

    async def plan(self) -> int:
        """Insert the runs of due schedules and move them on; how many schedules it planned."""
        now = self.clock.now()
        async with self.sessionmaker() as session:
            schedules = (
                await session.scalars(
                    select(Schedule)
                    .where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
                    .order_by(Schedule.next_run_at)
                    .limit(BATCH)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for schedule in schedules:
                assert schedule.next_run_at is not None
                try:
                    recurrence = recurrence_of(schedule)
                except AppError as exc:
                    # A stored rule that no longer reads (its timezone left the tz
                    # database): say so on the schedule rather than fail every tick.
                    schedule.enabled = False
                    schedule.disabled_reason = f"{exc.code}: {exc.detail}"[:300]
                    continue
                left = None if schedule.max_runs is None else schedule.max_runs - schedule.run_count
                plan = plan_due(
                    recurrence,
                    next_run_at=schedule.next_run_at,
                    now=now,
                    late_after=self.late_after,
                    catch_up=schedule.catch_up,
                    until=schedule.until,
                    runs_left=left,
                )
                for planned in plan.runs:
                    settled = planned.status != ScheduleRunStatus.PENDING
                    session.add(
                        ScheduleRun(
                            id=new_id(),
                            schedule_id=schedule.id,
                            occurrence_at=planned.occurrence_at,
                            trigger=planned.trigger,
                            status=planned.status,
                            missed=planned.missed,
                            attempts=0,
                            lease_until=planned.occurrence_at,
                            error=planned.note,
                            created_at=now,
                            finished_at=now if settled else None,
                        )
                    )
                schedule.next_run_at = plan.next_run_at
                schedule.run_count += plan.handed
                if plan.anchor is not None:
                    schedule.anchor_at = plan.anchor
            try:
                await session.commit()
            except IntegrityError:
                # Another scheduler of this process planned them first (SQLite takes no
                # row locks): theirs stand.
                await session.rollback()
                return 0
        return len(schedules)

    async def claim(self, limit: int) -> list[ScheduleRun]:
        """Claim due runs (pending, or running with a lapsed lease) under a fresh lease."""
        now = self.clock.now()
        due = (
            select(ScheduleRun.id)
            .where(
                ScheduleRun.status.in_((ScheduleRunStatus.PENDING, ScheduleRunStatus.RUNNING)),
                ScheduleRun.lease_until <= now,
                ScheduleRun.attempts < MAX_ATTEMPTS,
            )
            .order_by(ScheduleRun.lease_until)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self.sessionmaker() as session:
            claimed = await session.scalars(
                update(ScheduleRun)
                .where(ScheduleRun.id.in_(due.scalar_subquery()))
                .values(
                    status=ScheduleRunStatus.RUNNING,
                    lease_until=now + self.lease,
                    claimed_by=self.worker_id,
                    attempts=ScheduleRun.attempts + 1,
                )
                .returning(ScheduleRun),
                execution_options={"synchronize_session": False},
            )
            runs = list(claimed.all())
            await session.commit()
        return runs

    async def expire(self) -> int:
        """Fail the runs whose every attempt was cut short (their schedulers died)."""
        now = self.clock.now()
        async with self.sessionmaker() as session:
            result = await session.execute(
                update(ScheduleRun)
                .where(
                    ScheduleRun.status == ScheduleRunStatus.RUNNING,
                    ScheduleRun.lease_until <= now,
                    ScheduleRun.attempts >= MAX_ATTEMPTS,
                )
                .values(
                    status=ScheduleRunStatus.FAILED,
                    error=f"interrupted {MAX_ATTEMPTS} times: the scheduler stopped before "
                    "it posted; not tried again",
                    finished_at=now,
                    claimed_by=None,
                )
            )
            await session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
