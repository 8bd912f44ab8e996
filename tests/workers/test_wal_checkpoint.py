"""SQLite's write-ahead log checkpointed by the server's background task, never by a commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from relaychat.storage.db import create_engine
from relaychat.workers.wal_checkpoint import WalCheckpointer
from tests.support.backends import Backend


async def _write(engine: AsyncEngine, rows: int) -> None:
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
    for n in range(rows):
        async with engine.begin() as conn:
            await conn.exec_driver_sql("INSERT INTO t (v) VALUES (?)", (f"row {n} " * 200,))


async def _autocheckpoint(engine: AsyncEngine) -> object:
    """The pages of log at which a commit checkpoints by itself (0: never)."""
    async with engine.connect() as conn:
        return (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar()


async def test_commits_leave_the_log_to_the_checkpointer(tmp_path: Path) -> None:
    engine = create_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", background_checkpoints=True
    )
    try:
        assert await _autocheckpoint(engine) == 0
        # Far past the 1,000 pages at which a commit would have checkpointed by itself.
        await _write(engine, 900)
        wal = tmp_path / "db.sqlite-wal"
        assert wal.stat().st_size > 1000 * 4096
        checkpointer = WalCheckpointer(engine, interval=0.05)
        checkpointer.start()
        try:
            # The task's own checkpoints: the whole log copied into the database.
            for _ in range(200):  # at most 10 s
                if checkpointer.last is not None and checkpointer.last[1] == checkpointer.last[2]:
                    break
                await asyncio.sleep(0.05)
            assert checkpointer.last is not None
            log = checkpointer.last[1]
            assert log > 1000
        finally:
            await checkpointer.close()
        assert await checkpointer.checkpoint() == (0, log, log)
    finally:
        await engine.dispose()


async def test_without_the_flag_commits_checkpoint_as_sqlite_does(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        assert await _autocheckpoint(engine) == 1000
    finally:
        await engine.dispose()


async def test_the_checkpointer_runs_only_on_sqlite(backend: Backend) -> None:
    checkpointer = WalCheckpointer(backend.engine, interval=0.01)
    checkpointer.start()
    running = checkpointer._task is not None
    await checkpointer.close()
    assert running == (backend.engine.dialect.name == "sqlite")
