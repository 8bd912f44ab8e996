"""SQLite: a transaction that read first and writes later still gets the write lock."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from relaychat.storage.db import create_engine


async def test_read_then_write_after_another_writer_committed(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        async with engine.connect() as reader, engine.connect() as writer:
            await reader.execute(text("SELECT count(*) FROM t"))  # an older snapshot
            await writer.execute(text("INSERT INTO t (v) VALUES ('other')"))
            await writer.commit()
            # Without BEGIN IMMEDIATE on the first write this fails with "database is locked".
            await reader.execute(text("INSERT INTO t (v) VALUES ('mine')"))
            await reader.commit()
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
        assert rows == ["other", "mine"]
    finally:
        await engine.dispose()


async def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
        async with engine.connect() as conn:
            await conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
            await conn.execute(text("INSERT INTO t (v) VALUES ('b')"))
            await conn.rollback()
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    finally:
        await engine.dispose()
