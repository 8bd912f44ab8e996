"""The hourly audit counts: kept exactly by every writer of audit rows, the same answer
as the rows give, through the retention sweep, and filled by the migration from the rows
already there."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.access.audit import new_audit_event, record_audit
from relaychat.domain.stats.external_requests import external_stats
from relaychat.domain.stats.grid import StatsWindow, make_grid
from relaychat.domain.stats.settled import SettledBuckets
from relaychat.storage import migrate
from relaychat.storage.audit_hours import hour_of
from relaychat.storage.db import create_engine, create_sessionmaker
from relaychat.storage.models import AuditEvent, AuditHour
from relaychat.storage.tables import AUDIT_EVENTS
from relaychat.workers.audit_writer import AuditWriter
from relaychat.workers.retention import RetentionPolicy, RetentionSweeper
from tests.support.backends import Backend, required_url, scratch_database

NOW = datetime(2026, 12, 4, 12, 30, 15, tzinfo=UTC)
# (hours ago, owner, outcome, reason): several hours, owners, outcomes and reasons.
ROWS = [
    (0.1, "alice", "accepted", None),
    (0.2, None, "refused", "api_key_required"),
    (1.5, "alice", "replayed", None),
    (1.5, "bob", "accepted", None),
    (1.6, "bob", "refused", "rate_limited"),
    (2.99, "alice", "refused", "conversation_not_found"),
    (3.0, "alice", "accepted", None),
    (26.0, "bob", "accepted", None),
    (26.2, "alice", "refused", None),
    (30.5, None, "accepted", None),
]


def fields(hours_ago: float, owner: str | None, outcome: str, reason: str | None) -> dict[str, Any]:
    return {
        "method": "POST",
        "path": "/api/messages/c",
        "outcome": outcome,
        "reason": reason,
        "status": 201 if outcome != "refused" else 403,
        "latency_ms": 1.0 + hours_ago,
        "key_owner_id": owner,
        "created_at": NOW - timedelta(hours=hours_ago),
    }


Counts = dict[tuple[datetime, str, str, str], int]


async def recount(session: AsyncSession) -> tuple[Counts, Counts]:
    """(the hourly counts, the same counted from the audit rows)."""
    kept = {
        (h.hour, h.key_owner_id, h.outcome, h.reason): h.n
        for h in (await session.scalars(select(AuditHour))).all()
    }
    rows = Counter(
        (hour_of(e.created_at), e.key_owner_id or "", e.outcome, e.reason or "")
        for e in (await session.scalars(select(AuditEvent))).all()
    )
    return kept, dict(rows)


async def answers_agree(session: AsyncSession, settled: SettledBuckets) -> None:
    """The hourly answer (a keeper given) is the rows' answer (none), for each viewer."""
    for window, size in (
        (StatsWindow.WEEK, None),
        (StatsWindow.DAY, 3600),
        (StatsWindow.DAY, 7200),
    ):
        grid = make_grid(window, size, NOW)
        for owner in (None, "alice", "bob", "nobody"):
            hourly = await external_stats(session, grid, owner, NOW, settled)
            raw = await external_stats(session, grid, owner, NOW, None)
            assert hourly == raw, (window, size, owner)
            settled.audit.clear()


async def test_record_audit_keeps_its_hours(session: AsyncSession) -> None:
    for row in ROWS:
        await record_audit(session, **fields(*row))
    kept, counted = await recount(session)
    assert kept == counted and sum(kept.values()) == len(ROWS)
    await answers_agree(session, SettledBuckets())


async def test_the_audit_writer_keeps_its_batch_s_hours(clean_backend: Backend) -> None:
    sessionmaker = create_sessionmaker(clean_backend.engine)
    writer = AuditWriter(sessionmaker, max_batch=4)  # three batches
    for row in ROWS:
        writer.add(new_audit_event(**fields(*row)))
    await writer.flush()
    async with sessionmaker() as session:
        kept, counted = await recount(session)
        assert kept == counted and sum(kept.values()) == len(ROWS)
        # A second flush of the same hours adds to their counts.
        for row in ROWS[:3]:
            writer.add(new_audit_event(**fields(*row)))
        await writer.flush()
        kept, counted = await recount(session)
        assert kept == counted and sum(kept.values()) == len(ROWS) + 3
        await answers_agree(session, SettledBuckets())


async def test_the_retention_sweep_keeps_the_answers_equal(clean_backend: Backend) -> None:
    sessionmaker = create_sessionmaker(clean_backend.engine)
    async with sessionmaker() as session:
        for row in ROWS:
            await record_audit(session, **fields(*row))
    # A day and a bit: the horizon falls inside an hour holding rows on both sides.
    days = 26.1 / 24
    sweeper = RetentionSweeper(
        sessionmaker, RetentionPolicy(outbox_days=0, audit_days=days), clock=lambda: NOW
    )
    purged = await sweeper.run_once()
    assert purged.audit == 2
    async with sessionmaker() as session:
        kept, counted = await recount(session)
        cutoff = NOW - timedelta(days=days)
        assert min(hour for hour, *_ in kept) == hour_of(cutoff)  # the edge hour stays
        # Whole hours after the edge are exact; the edge hour still counts a swept row.
        assert {k: n for k, n in kept.items() if k[0] > hour_of(cutoff)} == {
            k: n for k, n in counted.items() if k[0] > hour_of(cutoff)
        }
        assert kept[(hour_of(cutoff), "alice", "refused", "")] == 1
        await answers_agree(session, SettledBuckets(retention_days=days))


async def test_the_migration_fills_the_hours_from_the_rows(
    backend: Backend, tmp_path: Path
) -> None:
    if backend.name == "sqlite":
        await migrated_with_rows(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
        return
    base = required_url("RELAYCHAT_TEST_DATABASE_URL")
    async with scratch_database(base, f"relaychat_hours_{uuid.uuid4().hex[:12]}") as url:
        await migrated_with_rows(url)


async def migrated_with_rows(url: str) -> None:
    """Rows written at the revision before the hourly counts, then the upgrade."""
    await asyncio.to_thread(migrate.upgrade, url, "0010")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            # Only the columns that revision had (request_id came with 0014).
            old = [{k: v for k, v in new_values(*row).items() if k != "request_id"} for row in ROWS]
            await conn.execute(insert(AUDIT_EVENTS), old)
        await asyncio.to_thread(migrate.upgrade, url)
        async with create_sessionmaker(engine)() as session:
            kept, counted = await recount(session)
            assert kept == counted and sum(kept.values()) == len(ROWS)
            await answers_agree(session, SettledBuckets())
    finally:
        await engine.dispose()


def new_values(
    hours_ago: float, owner: str | None, outcome: str, reason: str | None
) -> dict[str, Any]:
    event = new_audit_event(**fields(hours_ago, owner, outcome, reason))
    return {c.name: getattr(event, c.name) for c in AUDIT_EVENTS.columns}
