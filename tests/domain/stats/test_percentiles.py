"""Percentiles over a grid: exact (as PostgreSQL's percentile_cont) when the values are
few, estimated from a weighted sample when they are many."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.access.audit import new_audit_event
from relaychat.domain.stats.grid import Grid, StatsWindow, make_grid
from relaychat.domain.stats.percentiles import percentiles
from relaychat.statuses import AuditOutcome
from relaychat.storage.db import create_sessionmaker
from relaychat.storage.models import AuditEvent
from tests.support.backends import Backend

NOW = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
ACCEPTED = [AuditEvent.outcome == AuditOutcome.ACCEPTED]


@pytest.fixture
async def session(clean_backend: Backend) -> AsyncIterator[AsyncSession]:
    async with create_sessionmaker(clean_backend.engine)() as opened:
        yield opened


@pytest.fixture
def grid() -> Grid:
    return make_grid(StatsWindow.HOUR, 60, NOW)


async def store(session: AsyncSession, rows: list[tuple[datetime, float]]) -> None:
    session.add_all(
        new_audit_event(
            method="POST",
            path="/api/messages/c",
            outcome=AuditOutcome.ACCEPTED,
            status=201,
            latency_ms=latency,
            created_at=at,
        )
        for at, latency in rows
    )
    await session.commit()


def counts_of(grid: Grid, rows: list[tuple[datetime, float]]) -> list[int]:
    counts = [0] * grid.count
    for at, _ in rows:
        counts[int((at - grid.since).total_seconds()) // grid.bucket_seconds] += 1
    return counts


async def test_few_values_give_exact_percentiles(
    session: AsyncSession, grid: Grid, clean_backend: Backend
) -> None:
    rng = random.Random(5)
    rows = [
        (grid.since + timedelta(seconds=rng.uniform(0, 3600)), rng.lognormvariate(1.5, 0.7))
        for _ in range(150)
    ]
    await store(session, rows)
    found = await percentiles(
        session, AuditEvent.latency_ms, AuditEvent.created_at, ACCEPTED, grid, counts_of(grid, rows)
    )
    assert found is not None and found.exact
    ordered = sorted(latency for _, latency in rows)
    assert found.p50 == pytest.approx((ordered[74] + ordered[75]) / 2)
    if clean_backend.name == "postgres":
        sql = text(
            "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms) "
            "FROM audit_events"
        )
        expected = (await session.execute(sql)).scalar_one()
        assert [found.p50, found.p95, found.p99] == pytest.approx(expected)


async def test_many_values_are_sampled_each_bucket_weighing_its_count(
    session: AsyncSession, grid: Grid
) -> None:
    # Five quick requests a minute, and one minute with a burst of 500 slow ones in its
    # first second: most requests of the hour were slow.
    rows = [
        (grid.since + timedelta(minutes=minute, seconds=5 + 10 * n), 1.0)
        for minute in range(60)
        if minute != 30
        for n in range(5)
    ]
    burst = grid.since + timedelta(minutes=30)
    rows += [(burst + timedelta(microseconds=n), 100.0 + n / 100) for n in range(500)]
    await store(session, rows)
    found = await percentiles(
        session,
        AuditEvent.latency_ms,
        AuditEvent.created_at,
        ACCEPTED,
        grid,
        counts_of(grid, rows),
        sample_size=120,
    )
    assert found is not None and not found.exact
    # 500 of 795 requests took 100 ms: the median is one of them, though the burst gave
    # the sample a single value against the quick minutes' hundred and more.
    assert found.p50 == pytest.approx(100.0, abs=5)
    assert found.p95 == pytest.approx(100.0, abs=5)


async def test_no_value_no_percentiles(session: AsyncSession, grid: Grid) -> None:
    counts = [0] * grid.count
    assert (
        await percentiles(
            session, AuditEvent.latency_ms, AuditEvent.created_at, ACCEPTED, grid, counts
        )
    ) is None
