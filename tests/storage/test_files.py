"""The embedded database is private: directory 0700, database and journals 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from relaychat.storage.db import create_engine
from tests.support.cli import relaychat


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems start with, under which files come out world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


async def test_a_new_database_its_directory_and_journals_are_private(tmp_path: Path) -> None:
    database = tmp_path / "data" / "relaychat.db"
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x TEXT)"))
            await conn.execute(text("INSERT INTO t VALUES ('secret message')"))
        async with engine.connect() as conn:  # the WAL and its index exist while open
            await conn.execute(text("SELECT * FROM t"))
            journals = [database.with_name(database.name + s) for s in ("-wal", "-shm")]
            assert all(p.exists() for p in journals)
            assert [mode(p) for p in journals] == [0o600, 0o600]
    finally:
        await engine.dispose()
    assert mode(database.parent) == 0o700
    assert mode(database) == 0o600


async def test_loose_files_of_an_older_release_are_tightened(tmp_path: Path) -> None:
    database = tmp_path / "relaychat.db"
    wal = tmp_path / "relaychat.db-wal"
    for path in (database, wal):
        path.touch(mode=0o644)
        path.chmod(0o644)
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    await engine.dispose()
    assert (mode(database), mode(wal)) == (0o600, 0o600)


def test_the_cli_creates_the_data_dir_private_and_tightens_an_old_one(tmp_path: Path) -> None:
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    old.mkdir(mode=0o755)
    old.chmod(0o755)
    for data_dir in (fresh, old):
        env = {**os.environ, "RELAYCHAT_DATA_DIR": str(data_dir)}
        env.pop("DATABASE_URL", None)
        done = relaychat(env, "db", "upgrade")
        assert done.exit_code == 0, done.stderr
        assert mode(data_dir) == 0o700
        assert mode(data_dir / "relaychat.db") == 0o600
