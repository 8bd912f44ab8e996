"""p50/p95/p99 of a column over a grid: every value when there are few, else a bounded
sample spread over the buckets.

Sorting a week of a million latencies (in SQL or here) costs several times the 200 ms an
answer may take, so beyond `SAMPLE_SIZE` values a sample is drawn instead: each bucket is
cut into the same number of slices and each slice gives its first value, read through an
index that starts with the filter's columns and the time (one index seek per slice,
whatever the table's size). A slice with no row gives nothing, so each value stands for
its bucket's count divided by the values its bucket gave: a bucket weighs its count even
when its rows came in a burst.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Float, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from relaychat.domain.stats.grid import Grid, at_epoch, integers

# Values read at most per answer and column: a p99 estimated from 2,000 values rests on
# about 20 of them above it, enough for a dashboard, and 2,000 index seeks fit the budget.
SAMPLE_SIZE = 2000
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Quantiles of a set of values; `exact` False when they come from a sample."""

    p50: float
    p95: float
    p99: float
    exact: bool


async def percentiles(
    session: AsyncSession,
    value: ColumnElement[Any] | InstrumentedAttribute[Any],
    time: InstrumentedAttribute[Any],
    where: Sequence[ColumnElement[bool]],
    grid: Grid,
    counts: Sequence[int],
    *,
    sample_size: int = SAMPLE_SIZE,
) -> Percentiles | None:
    """The quantiles of `value` over the rows matching `where` whose `time` is in the
    grid, given how many match in each bucket (`counts`); None when none do."""
    total = sum(counts)
    if total == 0:
        return None
    if total <= sample_size:
        query = select(value).where(*where, time >= grid.since, time < grid.end)
        every = [float(v) for v in (await session.scalars(query)).all() if v is not None]
        return _exact(every) if every else None

    per_bucket = math.ceil(sample_size / grid.count)
    width = grid.bucket_seconds / per_bucket
    dialect = session.get_bind().dialect.name
    numbers = integers(grid.count * per_bucket, "seeds")
    start = literal(grid.first, BigInteger) + numbers.c.i * literal(width, Float)
    slices = select(
        numbers.c.i,
        at_epoch(dialect, start).label("lo"),
        at_epoch(dialect, start + literal(width, Float)).label("hi"),
    ).cte("slices")
    first = (
        select(value)
        .where(*where, time >= slices.c.lo, time < slices.c.hi)
        .order_by(time)
        .limit(1)
        .scalar_subquery()
    )
    found: dict[int, list[float]] = {}
    for index, got in await session.execute(select(slices.c.i, first)):
        if got is not None:
            found.setdefault(index // per_bucket, []).append(float(got))
    weighted = [(v, counts[b] / len(vs)) for b, vs in found.items() for v in vs]
    return _weighted(weighted) if weighted else None


def _exact(values: list[float]) -> Percentiles:
    """Linear interpolation between the closest ranks, as PostgreSQL's percentile_cont."""
    ordered = sorted(values)
    last = len(ordered) - 1

    def at(fraction: float) -> float:
        position = fraction * last
        low = int(position)
        high = min(low + 1, last)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    p50, p95, p99 = (at(q) for q in QUANTILES)
    return Percentiles(p50, p95, p99, exact=True)


def _weighted(pairs: list[tuple[float, float]]) -> Percentiles:
    """The smallest value whose cumulative weight reaches each fraction of the total."""
    ordered = sorted(pairs)
    total = sum(weight for _, weight in ordered)
    results: list[float] = []
    for fraction in QUANTILES:
        goal = fraction * total
        running = 0.0
        chosen = ordered[-1][0]
        for v, weight in ordered:
            running += weight
            if running >= goal:
                chosen = v
                break
        results.append(chosen)
    return Percentiles(results[0], results[1], results[2], exact=False)
