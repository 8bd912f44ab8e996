"""Finished audit buckets kept by a worker between answers: the same answer as a fresh
reading, only the unfinished buckets read again, nothing kept past the retention horizon."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.stats.external_requests import external_stats
from relaychat.domain.stats.grid import StatsWindow, make_grid
from relaychat.domain.stats.percentiles import SAMPLE_SIZE
from relaychat.domain.stats.settled import SettledBuckets
from relaychat.statuses import AuditOutcome
from tests.domain.stats.conftest import store_audit

NOW = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
GRID = make_grid(StatsWindow.HOUR, 60, NOW)


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


async def test_finished_buckets_are_kept_and_the_last_ones_read_again(
    session: AsyncSession,
) -> None:
    await store_audit(
        session, [(ago(minutes=50), 2.0), (ago(minutes=50), 4.0), (ago(seconds=10), 8.0)]
    )
    await store_audit(
        session, [(ago(minutes=40), 1.0)], outcome=AuditOutcome.REFUSED, reason="permission_denied"
    )
    kept = SettledBuckets()
    first = await external_stats(session, GRID, None, NOW, kept)
    assert (first.totals.accepted, first.totals.refused) == (3, 1)
    assert await external_stats(session, GRID, None, NOW, SettledBuckets()) == first

    # A row that lands in a finished bucket after it was kept is the trade: not seen by
    # this worker. One in a bucket still open is.
    await store_audit(session, [(ago(minutes=50), 16.0), (ago(seconds=5), 32.0)])
    again = await external_stats(session, GRID, None, NOW, kept)
    assert again.totals.accepted == 4
    assert again.errors == first.errors
    fresh = await external_stats(session, GRID, None, NOW, SettledBuckets())
    assert fresh.totals.accepted == 5


async def test_nothing_is_kept_that_the_sweeper_may_still_delete(session: AsyncSession) -> None:
    await store_audit(session, [(ago(minutes=50), 2.0), (ago(minutes=10), 4.0)])
    half_an_hour = SettledBuckets(retention_days=0.5 / 24)
    await external_stats(session, GRID, None, NOW, half_an_hour)
    await store_audit(session, [(ago(minutes=50), 8.0), (ago(minutes=10), 16.0)])
    again = await external_stats(session, GRID, None, NOW, half_an_hour)
    # 50 minutes ago is past the horizon, so read again; 10 minutes ago was kept.
    assert again.totals.accepted == 3


async def test_kept_samples_give_the_fresh_reading_s_percentiles(session: AsyncSession) -> None:
    rng = random.Random(3)
    rows = [(ago(seconds=rng.uniform(0, 3600)), rng.lognormvariate(1.5, 0.5)) for _ in range(2100)]
    await store_audit(session, rows)
    kept = SettledBuckets()
    first = await external_stats(session, GRID, None, NOW, kept)
    assert first.totals.accepted == 2100 > SAMPLE_SIZE
    assert first.processing_ms is not None and not first.processing_ms.exact
    assert await external_stats(session, GRID, None, NOW, kept) == first
    assert await external_stats(session, GRID, None, NOW, SettledBuckets()) == first


async def test_each_viewer_and_bucket_size_is_kept_apart(session: AsyncSession) -> None:
    await store_audit(session, [(ago(minutes=30), 2.0)])
    kept = SettledBuckets()
    assert (await external_stats(session, GRID, None, NOW, kept)).totals.accepted == 1
    assert (await external_stats(session, GRID, "someone", NOW, kept)).totals.accepted == 0
    wide = make_grid(StatsWindow.HOUR, 600, NOW)
    assert (await external_stats(session, wide, None, NOW, kept)).totals.accepted == 1
