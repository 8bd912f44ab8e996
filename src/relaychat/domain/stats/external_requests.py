"""What machines asked for: external requests per outcome and bucket, the refusals by
reason, and how long the accepted ones took (from the audit rows).

Each bucket's count is one walk of an index range, never a function of every row: the
database makes the bucket bounds (`bucket_table`) and each bucket counts its own range.
Everyone's rows of a bucket are one range of `ix_audit_time`, and their acceptances are
those rows less the replayed and refused ones (the only outcomes the writers store); an
owner's acceptances are one range of `ix_audit_owner_outcome_time`. Grouping the rows by
a time computed per row instead (epoch seconds divided by the bucket size) took a week of
a million rows 1 to 1.5 s on SQLite, against about 70 ms this way; refusals, a few in a
hundred, are grouped that way. Buckets that are over are kept by the worker
(`settled.py`): after the first answer only the last bucket or two are read.

Buckets of whole hours (the week's default) are counted from the hourly counts the writers
keep with the rows (`audit_hours`, storage/audit_hours.py), a few thousand rows for a week
instead of a million index entries: exact at any moment, being written in the rows'
transaction. Only the buckets by the retention horizon are read from the rows, as the
sweeper deletes rows there whose hour's count stays (and older ones are mostly gone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.stats.grid import Grid, bucket_of, bucket_table
from relaychat.domain.stats.percentiles import (
    SAMPLE_SIZE,
    Percentiles,
    every_value,
    exact,
    sampled_values,
    weighted,
)
from relaychat.domain.stats.settled import (
    AuditBucket,
    Kept,
    SettledBuckets,
    kept_or_counted,
    samples_of,
)
from relaychat.errors import ErrorCode
from relaychat.statuses import AuditOutcome
from relaychat.storage.audit_hours import HOUR, hour_of
from relaychat.storage.models import AuditEvent, AuditHour

# A refusal stored without a reason (no writer does that today) is still counted.
UNKNOWN_REASON = "unknown"


@dataclass(frozen=True, slots=True)
class ExternalPoint:
    """One bucket: requests by outcome; `refused` leaves out the rate-limited ones."""

    t: datetime
    accepted: int
    replayed: int
    refused: int
    rate_limited: int


@dataclass(frozen=True, slots=True)
class ExternalTotals:
    total: int
    accepted: int
    replayed: int
    refused: int
    rate_limited: int


@dataclass(frozen=True, slots=True)
class ErrorCount:
    code: str
    count: int


@dataclass(frozen=True, slots=True)
class ExternalStats:
    totals: ExternalTotals
    series: list[ExternalPoint]
    processing_ms: Percentiles | None
    errors: list[ErrorCount]


async def external_stats(
    session: AsyncSession,
    grid: Grid,
    owner_id: str | None,
    now: datetime,
    settled: SettledBuckets | None = None,
) -> ExternalStats:
    """The external requests of `grid`, of every key (`owner_id` None) or of one owner's;
    `settled` keeps what is over between answers."""
    scope: list[ColumnElement[bool]] = (
        [] if owner_id is None else [AuditEvent.key_owner_id == owner_id]
    )
    kept = settled.audit if settled is not None else Kept[AuditBucket](1)
    done = settled.settled(grid, now, swept=True) if settled is not None else range(0)
    hourly = _hourly_from(grid, now, settled)

    async def counted(part: Grid) -> list[AuditBucket]:
        if hourly is None:
            return await _count(session, part, scope)
        return await _count_by_hours(session, part, owner_id, scope, hourly)

    every = await kept_or_counted(grid, kept, owner_id, done, counted)

    accepted = [b.accepted for b in every]
    where = [*scope, AuditEvent.outcome == AuditOutcome.ACCEPTED]
    if sum(accepted) <= SAMPLE_SIZE:
        processing = exact(
            await every_value(session, AuditEvent.latency_ms, AuditEvent.created_at, where, grid)
        )
    else:

        async def draw(part: Grid, slices: int) -> dict[int, list[float]]:
            return await sampled_values(
                session, AuditEvent.latency_ms, AuditEvent.created_at, where, part, slices
            )

        processing = weighted(await samples_of(grid, every, accepted, draw), accepted)

    reasons: dict[str, int] = {}
    for bucket in every:
        for code, count in bucket.reasons.items():
            reasons[code] = reasons.get(code, 0) + count
    series = [
        ExternalPoint(grid.start(i), b.accepted, b.replayed, b.refused, b.rate_limited)
        for i, b in enumerate(every)
    ]
    totals = ExternalTotals(
        total=sum(b.accepted + b.replayed + b.refused + b.rate_limited for b in every),
        accepted=sum(accepted),
        replayed=sum(b.replayed for b in every),
        refused=sum(b.refused for b in every),
        rate_limited=sum(b.rate_limited for b in every),
    )
    errors = [
        ErrorCount(code, count)
        for code, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    ]
    return ExternalStats(totals, series, processing, errors)


def _hourly_from(grid: Grid, now: datetime, settled: SettledBuckets | None) -> datetime | None:
    """From when `grid`'s buckets are counted from the hourly counts: None for sizes that
    are not whole hours, or when the retention horizon is not known (no keeper, as the
    CLI); else the first whole hour after the horizon (the sweeper's clock may run a
    little ahead: `settle_seconds` of slack), or the grid's start without retention."""
    if settled is None or grid.bucket_seconds % 3600:
        return None
    if not settled.retention_seconds:
        return grid.since
    edge = now - timedelta(seconds=settled.retention_seconds - settled.settle_seconds)
    start = hour_of(edge)
    return start if start == edge else start + HOUR


async def _count_by_hours(
    session: AsyncSession,
    grid: Grid,
    owner_id: str | None,
    scope: Sequence[ColumnElement[bool]],
    hourly: datetime,
) -> list[AuditBucket]:
    """The buckets starting at `hourly` or later from the hourly counts, the earlier ones
    (by or before the retention horizon) from the rows."""
    step = grid.bucket_seconds
    raw = min(grid.count, max(0, -(-(int(hourly.timestamp()) - grid.first) // step)))
    found = await _count(session, grid.part(0, raw), scope) if raw else []
    if raw == grid.count:
        return found
    part = grid.part(raw, grid.count)
    query = select(AuditHour.hour, AuditHour.outcome, AuditHour.reason, func.sum(AuditHour.n))
    query = query.where(AuditHour.hour >= part.since, AuditHour.hour < part.end)
    if owner_id is not None:
        query = query.where(AuditHour.key_owner_id == owner_id)
    counted = [AuditBucket() for _ in range(part.count)]
    rows = await session.execute(
        query.group_by(AuditHour.hour, AuditHour.outcome, AuditHour.reason)
    )
    for hour, outcome, reason, total in rows:
        bucket, n = counted[(int(hour.timestamp()) - part.first) // step], int(total)
        if outcome == AuditOutcome.REPLAYED:
            bucket.replayed += n
        elif outcome == AuditOutcome.REFUSED:
            _refusals(bucket, reason, n)
        # As `_count`: an owner's acceptances are their accepted rows, everyone's the rows
        # neither replayed nor refused.
        elif owner_id is None or outcome == AuditOutcome.ACCEPTED:
            bucket.accepted += n
    return found + counted


def _refusals(bucket: AuditBucket, reason: str | None, count: int) -> None:
    code = reason or UNKNOWN_REASON
    bucket.reasons[code] = bucket.reasons.get(code, 0) + count
    if code == ErrorCode.RATE_LIMITED:
        bucket.rate_limited += count
    else:
        bucket.refused += count


async def _count(
    session: AsyncSession, grid: Grid, scope: Sequence[ColumnElement[bool]]
) -> list[AuditBucket]:
    """Every bucket of `grid` counted (no sample)."""
    dialect = session.get_bind().dialect.name
    buckets = bucket_table(grid, dialect)
    in_bucket = [AuditEvent.created_at >= buckets.c.lo, AuditEvent.created_at < buckets.c.hi]

    def counted(*where: ColumnElement[bool]) -> ColumnElement[int]:
        return select(func.count()).where(*scope, *where, *in_bucket).scalar_subquery()

    # Asked for everyone's acceptances outright, PostgreSQL walked `ix_audit_time` and
    # fetched every row from the table to test its outcome (the first answer of a week of
    # a million rows: 200 to 480 ms for this statement, against 80 ms counting every row).
    first = counted() if not scope else counted(AuditEvent.outcome == AuditOutcome.ACCEPTED)
    found = [AuditBucket() for _ in range(grid.count)]
    rows = await session.execute(
        select(buckets.c.i, first, counted(AuditEvent.outcome == AuditOutcome.REPLAYED))
    )
    for index, accepted, replayed in rows:
        found[index].accepted, found[index].replayed = accepted, replayed

    # Refusals are few next to acceptances: each row's bucket computed from its time.
    # (Joined to the buckets' ranges instead, SQLite built an automatic index over the
    # whole table for each answer: seconds.)
    index_of = bucket_of(dialect, AuditEvent.created_at, grid)
    refusals = await session.execute(
        select(index_of, AuditEvent.reason, func.count())
        .where(
            *scope,
            AuditEvent.outcome == AuditOutcome.REFUSED,
            AuditEvent.created_at >= grid.since,
            AuditEvent.created_at < grid.end,
        )
        .group_by(index_of, AuditEvent.reason)
    )
    for index, reason, count in refusals:
        _refusals(found[index], reason, count)
    if not scope:
        for bucket in found:
            bucket.accepted -= bucket.replayed + bucket.refused + bucket.rate_limited
    return found
