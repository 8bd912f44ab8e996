"""How the replies went: generations ended per status and bucket, those running now, and
the time to their first token (from the generations table).

A reply is counted in the bucket it ended in: its status is final from then on, where
the bucket it started in would still change as it runs. One that runs now is counted
whenever it started.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.stats.grid import Grid, bucket_table
from relaychat.domain.stats.percentiles import Percentiles, percentiles
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


async def replies_stats(session: AsyncSession, grid: Grid, owner_id: str | None) -> RepliesStats:
    """The replies of `grid`, in everyone's conversations (`owner_id` None) or one owner's."""
    scope: list[ColumnElement[bool]] = [] if owner_id is None else [Generation.user_id == owner_id]
    buckets = bucket_table(grid, session.get_bind().dialect.name)

    def ended_in_bucket(status: GenerationStatus) -> ColumnElement[int]:
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

    completed = [0] * grid.count
    failed = [0] * grid.count
    rows = await session.execute(
        select(
            buckets.c.i,
            ended_in_bucket(GenerationStatus.COMPLETED),
            ended_in_bucket(GenerationStatus.FAILED),
        )
    )
    for index, completed_count, failed_count in rows:
        completed[index], failed[index] = completed_count, failed_count
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

    ttft = await percentiles(
        session,
        _millis_between(session),
        Generation.finished_at,
        [
            *scope,
            Generation.status == GenerationStatus.COMPLETED,
            Generation.first_token_at.is_not(None),
        ],
        grid,
        completed,
    )
    totals = RepliesTotals(
        total=sum(completed) + sum(failed) + aborted + interrupted + running,
        completed=sum(completed),
        failed=sum(failed),
        aborted=aborted,
        interrupted=interrupted,
        running=running,
    )
    series = [RepliesPoint(b.start, completed[b.index], failed[b.index]) for b in grid.buckets()]
    return RepliesStats(totals, series, ttft)
