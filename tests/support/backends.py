"""Test backends: SQLite + memory, and PostgreSQL + Redis when their URLs are given.

Under CI=true a missing PostgreSQL or Redis URL fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from relaychat.storage import migrate
from relaychat.storage.db import create_engine
from relaychat.storage.models import Base

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
DATABASE_ENV = "RELAYCHAT_TEST_DATABASE_URL"
REDIS_ENV = "RELAYCHAT_TEST_REDIS_URL"
RUN_ID = uuid.uuid4().hex[:10]
REDIS_PREFIX_ROOT = f"rctest:{RUN_ID}:"


@dataclass
class Backend:
    """One storage + events combination the suite runs against."""

    name: str
    database_url: str
    redis_url: str | None
    engine: AsyncEngine

    async def truncate(self) -> None:
        """Empty every table, keeping the schema.

        DELETE, children before parents, on PostgreSQL too: a test leaves a handful of rows,
        and TRUNCATE's new files for every table and index cost a quarter to a whole second
        per test on a loaded machine, against a few milliseconds for DELETE."""
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        async with self.engine.begin() as conn:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))


def required_url(env_var: str) -> str:
    """The URL in `env_var`; skipped when absent, a failure under CI."""
    value = os.environ.get(env_var, "").strip()
    if not value:
        if IN_CI:
            pytest.fail(f"{env_var} must be set when CI=true; the suite needs that service")
        pytest.skip(f"{env_var} not set")
    return value


async def sqlite_backend(directory: Path) -> AsyncIterator[Backend]:
    """A migrated SQLite file in `directory`."""
    url = f"sqlite+aiosqlite:///{directory / 'relaychat-test.db'}"
    # Alembic's env calls asyncio.run, which cannot nest inside the test loop.
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    try:
        yield Backend("sqlite", url, None, engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def scratch_database(base_url: str, name: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database `name` on `base_url`'s server, dropped afterwards
    (its connections closed by force); yields its URL."""
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@asynccontextmanager
async def empty_database(backend: Backend, directory: Path) -> AsyncIterator[str]:
    """The URL of a new, empty database on `backend`'s kind (a file in `directory` for
    SQLite), for a test that migrates it or changes what the shared one must keep."""
    if backend.name == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'empty.db'}"
        return
    name = f"relaychat_empty_{uuid.uuid4().hex[:10]}"
    async with scratch_database(required_url(DATABASE_ENV), name) as url:
        yield url


async def delete_keys(redis_url: str, prefix: str) -> None:
    """Delete every Redis key under `prefix`."""
    redis = Redis.from_url(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        # In batches: one DEL with a huge argument list would block the server for long.
        for start in range(0, len(keys), 500):
            await redis.delete(*keys[start : start + 500])
    finally:
        await redis.aclose()


async def postgres_backend(base_url: str, redis_url: str) -> AsyncIterator[Backend]:
    """A fresh, migrated PostgreSQL database for this run, dropped afterwards."""
    try:
        async with scratch_database(base_url, f"relaychat_test_{RUN_ID}") as url:
            await asyncio.to_thread(migrate.upgrade, url)
            engine = create_engine(url)
            try:
                yield Backend("postgres", url, redis_url, engine)
            finally:
                await engine.dispose()
    finally:
        await delete_keys(redis_url, REDIS_PREFIX_ROOT)


async def row_counts(backend: Backend) -> dict[str, int]:
    """How many rows each table holds; tests compare these before and after a refused request."""
    counts: dict[str, int] = {}
    async with backend.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name == "audit_hours":
                continue  # the audit rows counted per hour: tests follow `audit_events`
            counts[table.name] = (
                await conn.execute(text(f"SELECT COUNT(*) FROM {table.name}"))
            ).scalar_one()
    return counts
