"""How the replies went: generations ended per status and bucket, those running now, and
the time to their first token (from the generations table).

A reply is counted in the bucket it ended in: its status is final from then on, where
the bucket it started in would still change as it runs. One that runs now is counted
whenever it started. Completed and failed ones are counted per bucket, each bucket one
walk of an index range (`ix_generations_status_finished`, or the owner's); finished
buckets are kept by the worker (`settled.py`). Aborted and interrupted ones, few, are
counted over the whole window each time: an interrupted reply's worker may still take it
back and finish it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.stats.grid import Grid, bucket_table
from relaychat.domain.stats.percentiles import (
    SAMPLE_SIZE,
    Percentiles,
    every_value,
    exact,
    sampled_values,
    weighted,
)
from relaychat.domain.stats.settled import (
    Kept,
    RepliesBucket,
    SettledBuckets,
    kept_or_counted,
    samples_of,
)
from relaychat.statuses import GenerationStatus
from relaychat.storage.models import Generation


@dataclass(frozen=True, slots=True)
class RepliesPoint:
    t: datetime
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class RepliesTotals:
    """Replies that ended in the window by status, plus those running now."""

    total: int
    completed: int
    failed: int
    aborted: int
    interrupted: int
    running: int


@dataclass(frozen=True, slots=True)
class RepliesStats:
    totals: RepliesTotals
    series: list[RepliesPoint]
    ttft_ms: Percentiles | None


def _millis_between(session: AsyncSession) -> ColumnElement[Any]:
    """first_token_at - started_at in milliseconds, in the database's own date arithmetic
    (SQLite keeps times as text, which julianday reads to the millisecond)."""
    if session.get_bind().dialect.name == "sqlite":
        days = func.julianday(Generation.first_token_at) - func.julianday(Generation.started_at)
        return days * 86_400_000.0
    seconds = func.extract("epoch", Generation.first_token_at - Generation.started_at)
    return seconds * 1000.0


async def replies_stats(
    session: AsyncSession,
    grid: Grid,
    owner_id: str | None,
    now: datetime,
    settled: SettledBuckets | None = None,
) -> RepliesStats:
    """The replies of `grid`, in everyone's conversations (`owner_id` None) or one owner's;
    `settled` keeps what is over between answers."""
    scope: list[ColumnElement[bool]] = [] if owner_id is None else [Generation.user_id == owner_id]
    kept = settled.replies if settled is not None else Kept[RepliesBucket](1)
    done = settled.settled(grid, now, swept=False) if settled is not None else range(0)
    every = await kept_or_counted(
        grid, kept, owner_id, done, lambda part: _count(session, part, scope)
    )

    def ended_in_window(status: GenerationStatus) -> ColumnElement[int]:
        return (
            select(func.count())
            .where(
                *scope,
                Generation.status == status,
                Generation.finished_at >= grid.since,
                Generation.finished_at < grid.end,
            )
            .scalar_subquery()
        )

    running_now = (
        select(func.count())
        .where(*scope, Generation.status == GenerationStatus.RUNNING)
        .scalar_subquery()
    )
    aborted, interrupted, running = (
        await session.execute(
            select(
                ended_in_window(GenerationStatus.ABORTED),
                ended_in_window(GenerationStatus.INTERRUPTED),
                running_now,
            )
        )
    ).one()

    completed = [b.completed for b in every]
    value = _millis_between(session)
    where = [
        *scope,
        Generation.status == GenerationStatus.COMPLETED,
        Generation.first_token_at.is_not(None),
    ]
    if sum(completed) <= SAMPLE_SIZE:
        ttft = exact(await every_value(session, value, Generation.finished_at, where, grid))
    else:

        async def draw(part: Grid, slices: int) -> dict[int, list[float]]:
            return await sampled_values(session, value, Generation.finished_at, where, part, slices)

        ttft = weighted(await samples_of(grid, every, completed, draw), completed)

    failed = sum(b.failed for b in every)
    totals = RepliesTotals(
        total=sum(completed) + failed + aborted + interrupted + running,
        completed=sum(completed),
        failed=failed,
        aborted=aborted,
        interrupted=interrupted,
        running=running,
    )
    series = [RepliesPoint(grid.start(i), b.completed, b.failed) for i, b in enumerate(every)]
    return RepliesStats(totals, series, ttft)


async def _count(
    session: AsyncSession, grid: Grid, scope: Sequence[ColumnElement[bool]]
) -> list[RepliesBucket]:
    """Every bucket of `grid`: its completed and failed replies (no sample)."""
    buckets = bucket_table(grid, session.get_bind().dialect.name)

    def ended(status: GenerationStatus) -> ColumnElement[int]:
        return (
            select(func.count())
            .where(
                *scope,
                Generation.status == status,
                Generation.finished_at >= buckets.c.lo,
                Generation.finished_at < buckets.c.hi,
            )
            .scalar_subquery()
        )

    found = [RepliesBucket() for _ in range(grid.count)]
    rows = await session.execute(
        select(buckets.c.i, ended(GenerationStatus.COMPLETED), ended(GenerationStatus.FAILED))
    )
    for index, completed, failed in rows:
        found[index].completed, found[index].failed = completed, failed
    return found
