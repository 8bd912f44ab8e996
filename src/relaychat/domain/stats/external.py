"""What machines asked for: external requests per outcome and bucket, the refusals by
reason, and how long the accepted ones took (from the audit rows).

Each bucket's count is one walk of an index range, never a function of every row: the
database makes the bucket bounds (`bucket_table`) and each bucket counts its own range of
`ix_audit_outcome_time` (or the owner's `ix_audit_owner_outcome_time`), which hold every
column read here. Grouping the rows by a time computed per row instead (epoch seconds
divided by the bucket size) took a week of a million rows 1 to 1.5 s on SQLite, against
about 70 ms for the same counts read this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.stats.grid import Grid, bucket_table
from relaychat.domain.stats.percentiles import Percentiles, percentiles
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


async def external_stats(session: AsyncSession, grid: Grid, owner_id: str | None) -> ExternalStats:
    """The external requests of `grid`, of every key (`owner_id` None) or of one owner's."""
    scope: list[ColumnElement[bool]] = (
        [] if owner_id is None else [AuditEvent.key_owner_id == owner_id]
    )
    buckets = bucket_table(grid, session.get_bind().dialect.name)

    def counted(outcome: AuditOutcome, *where: ColumnElement[bool]) -> ColumnElement[int]:
        return (
            select(func.count())
            .where(
                *scope,
                AuditEvent.outcome == outcome,
                AuditEvent.created_at >= buckets.c.lo,
                AuditEvent.created_at < buckets.c.hi,
                *where,
            )
            .scalar_subquery()
        )

    accepted = [0] * grid.count
    replayed = [0] * grid.count
    refused = [0] * grid.count
    rate_limited = [0] * grid.count
    rows = await session.execute(
        select(
            buckets.c.i,
            counted(AuditOutcome.ACCEPTED),
            counted(AuditOutcome.REPLAYED),
            counted(AuditOutcome.REFUSED),
            counted(AuditOutcome.REFUSED, AuditEvent.reason == ErrorCode.RATE_LIMITED),
        )
    )
    for index, accepted_count, replayed_count, refused_count, limited_count in rows:
        accepted[index], replayed[index] = accepted_count, replayed_count
        refused[index], rate_limited[index] = refused_count - limited_count, limited_count

    # Refusals are few next to acceptances: grouping them by reason is cheap.
    reasons = await session.execute(
        select(AuditEvent.reason, func.count())
        .where(
            *scope,
            AuditEvent.outcome == AuditOutcome.REFUSED,
            AuditEvent.created_at >= grid.since,
            AuditEvent.created_at < grid.end,
        )
        .group_by(AuditEvent.reason)
    )
    by_reason: dict[str, int] = {}
    for reason, count in reasons:
        code = reason or UNKNOWN_REASON
        by_reason[code] = by_reason.get(code, 0) + count

    processing = await percentiles(
        session,
        AuditEvent.latency_ms,
        AuditEvent.created_at,
        [*scope, AuditEvent.outcome == AuditOutcome.ACCEPTED],
        grid,
        accepted,
    )
    series = [
        ExternalPoint(
            b.start, accepted[b.index], replayed[b.index], refused[b.index], rate_limited[b.index]
        )
        for b in grid.buckets()
    ]
    totals = ExternalTotals(
        total=sum(accepted) + sum(replayed) + sum(refused) + sum(rate_limited),
        accepted=sum(accepted),
        replayed=sum(replayed),
        refused=sum(refused),
        rate_limited=sum(rate_limited),
    )
    errors = [
        ErrorCount(code, count)
        for code, count in sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
    ]
    return ExternalStats(totals, series, processing, errors)
