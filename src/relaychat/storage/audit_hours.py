"""The hourly counts of the audit rows (`audit_hours`): added to by every writer of audit
rows in its own transaction, filled once from the rows already there (the migration, and
the benchmark that writes rows straight), and emptied of hours the retention sweeper has
deleted the rows of.

Being written with the rows, they are exact at any moment: the dashboard counts whole
hours from them (domain/stats/external_requests.py) instead of walking every row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Insert, Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from relaychat.storage.models import AuditHour

AUDIT_HOURS = cast(Table, AuditHour.__table__)
HOUR = timedelta(hours=1)

# The hour of a stored time, as the database stores an hour: SQLite keeps times as
# `YYYY-MM-DD HH:MM:SS.ffffff` text (storage/types.py), PostgreSQL as timestamptz.
_HOUR_OF = {
    "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', created_at)",
    "postgresql": "date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
}


def hour_of(moment: datetime) -> datetime:
    """The start of the hour (UTC) holding `moment`."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def back_fill_sql(dialect: str) -> str:
    """Every audit row counted into its hour, added to what is there: the migration's fill
    (the table empty), and the benchmark's after it writes rows without the writers."""
    return f"""
INSERT INTO audit_hours (hour, key_owner_id, outcome, reason, n)
SELECT {_HOUR_OF[dialect]}, coalesce(key_owner_id, ''), outcome, coalesce(reason, ''),
       count(*)
FROM audit_events
WHERE true  -- SQLite's upsert after a SELECT needs a WHERE to parse
GROUP BY 1, 2, 3, 4
ON CONFLICT (hour, key_owner_id, outcome, reason) DO UPDATE SET n = audit_hours.n + excluded.n
"""


async def add_audit_hours(
    conn: AsyncConnection | AsyncSession, rows: Iterable[Mapping[str, Any]]
) -> None:
    """Count `rows` (audit row values: `created_at`, `key_owner_id`, `outcome`, `reason`)
    into their hours: one statement, inside the caller's transaction, so the counts commit
    or roll back with the rows."""
    counts = Counter(
        (
            hour_of(row["created_at"]),
            row["key_owner_id"] or "",
            row["outcome"],
            row["reason"] or "",
        )
        for row in rows
    )
    if not counts:
        return
    values = [
        {"hour": hour, "key_owner_id": owner, "outcome": outcome, "reason": reason, "n": n}
        # Sorted, so two batches lock the same counts in the same order (no deadlock).
        for (hour, owner, outcome, reason), n in sorted(counts.items())
    ]
    bind = conn.get_bind() if isinstance(conn, AsyncSession) else conn
    # One statement executed for every count (executemany), not the counts written into a
    # statement: that one SQLAlchemy could not cache and compiled again for every batch.
    await conn.execute(_upsert(bind.dialect.name), values)


@cache
def _upsert(dialect: str) -> Insert:
    """The upsert adding `n` to an hour's count, for the dialect."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(AUDIT_HOURS)
    return statement.on_conflict_do_update(
        index_elements=[
            AUDIT_HOURS.c.hour,
            AUDIT_HOURS.c.key_owner_id,
            AUDIT_HOURS.c.outcome,
            AUDIT_HOURS.c.reason,
        ],
        set_={"n": AUDIT_HOURS.c.n + statement.excluded.n},
    )


async def forget_hours_before(session: AsyncSession, cutoff: datetime) -> None:
    """Delete the counts of the hours wholly before `cutoff` (their rows are gone); the
    hour holding it keeps counting rows that are gone too, so readers take the hours by
    the retention horizon from the rows (domain/stats/external_requests.py)."""
    await session.execute(delete(AuditHour).where(AuditHour.hour < hour_of(cutoff)))
