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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

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
from relaychat.storage.models import AuditEvent

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
    every = await kept_or_counted(
        grid, kept, owner_id, done, lambda part: _count(session, part, scope)
    )

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
        bucket = found[index]
        code = reason or UNKNOWN_REASON
        bucket.reasons[code] = bucket.reasons.get(code, 0) + count
        if code == ErrorCode.RATE_LIMITED:
            bucket.rate_limited += count
        else:
            bucket.refused += count
    if not scope:
        for bucket in found:
            bucket.accepted -= bucket.replayed + bucket.refused + bucket.rate_limited
    return found
