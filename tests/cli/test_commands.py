"""The relaychat command: run in this process as a user would run it (see tests/support/cli.py),
plus one smoke test of the installed executable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from relaychat.storage import migrate
from relaychat.storage.db import create_engine
from tests.support.backends import DATABASE_ENV, REDIS_PREFIX_ROOT, RUN_ID, Backend, required_url
from tests.support.cli import in_thread, relaychat
from tests.support.live import server_env


def embedded_env(data_dir: Path) -> dict[str, str]:
    """The environment with the embedded SQLite database in `data_dir` (no Redis)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env["RELAYCHAT_DATA_DIR"] = str(data_dir)
    return env


def test_the_installed_command_migrates_creates_a_user_and_a_key(tmp_path: Path) -> None:
    """The one test that runs the real executable: entry point, stdin and exit codes."""
    executable = Path(sys.executable).parent / "relaychat"
    env = embedded_env(tmp_path / "fresh")

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(executable), *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    upgraded = run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "fresh" / "relaychat.db").exists()
    created = run("users", "create", "--email", "a@example.com", "--name", "A", stdin="password1\n")
    assert created.returncode == 0, created.stderr
    assert "created admin a@example.com" in created.stdout
    key = run("keys", "create", "--owner", "a@example.com", "--name", "smoke")
    assert key.returncode == 0, key.stderr
    assert "created key smoke" in key.stdout and "secret: rck_" in key.stdout


def test_db_upgrade_on_a_fresh_sqlite_data_dir(tmp_path: Path) -> None:
    env = embedded_env(tmp_path / "fresh")
    result = relaychat(env, "db", "upgrade")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "database at head\n"
    assert (tmp_path / "fresh" / "relaychat.db").exists()
    again = relaychat(env, "db", "upgrade")
    assert again.exit_code == 0, again.stderr


def test_users_create_and_list(clean_backend: Backend, tmp_path: Path) -> None:
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}cli:")
    created = relaychat(
        env,
        "users",
        "create",
        "--email",
        "Root@Example.com",
        "--name",
        "Root",
        "--admin",
        stdin="a strong password\n",
    )
    assert created.exit_code == 0, created.stderr
    assert "created admin root@example.com" in created.stdout
    plain = relaychat(
        env, "users", "create", "--email", "b@example.com", "--name", "Bee", stdin="password2\n"
    )
    assert "created user b@example.com" in plain.stdout

    listed = relaychat(env, "users", "list")
    assert listed.exit_code == 0, listed.stderr
    assert "root@example.com" in listed.stdout and "b@example.com" in listed.stdout
    assert "admin" in listed.stdout

    duplicate = relaychat(
        env, "users", "create", "--email", "b@example.com", "--name", "B", stdin="password3\n"
    )
    assert duplicate.exit_code == 1
    assert "already registered" in duplicate.stderr
    weak = relaychat(
        env, "users", "create", "--email", "c@example.com", "--name", "C", stdin="short\n"
    )
    assert weak.exit_code == 1
    assert "at least 8 characters" in weak.stderr


def test_several_workers_without_redis_are_refused(tmp_path: Path) -> None:
    result = relaychat(embedded_env(tmp_path), "serve", "--workers", "2", "--port", "1")
    assert result.exit_code == 2
    assert "needs REDIS_URL" in result.stderr


MANAGEMENT_COMMANDS = [
    ["users", "create", "--email", "a@example.com", "--name", "A"],
    ["users", "list"],
    ["agents", "create", "--owner", "a@example.com", "--name", "A", "--endpoint", "fake"],
    ["agents", "list"],
    ["agents", "delete", "some-agent"],
    ["keys", "create", "--owner", "a@example.com", "--name", "k"],
    ["keys", "list"],
    ["keys", "revoke", "some-key"],
    ["keys", "rotate", "some-key"],
    ["webhooks", "create", "--owner", "a@example.com", "--url", "https://example.com/hook"],
    ["webhooks", "list"],
    ["webhooks", "delete", "some-hook"],
    # (The two that encrypt a secret would generate the data dir's key: not before the check.)
    [
        "channels",
        "create",
        "twilio",
        "--name",
        "x",
        "--account-sid",
        f"AC{'0' * 32}",
        "--auth-token",
        "t",
        "--public-url",
        "https://example.com",
        "--owner",
        "a@example.com",
    ],
    ["channels", "list"],
    ["channels", "delete", "some-channel"],
]


@pytest.mark.parametrize("command", MANAGEMENT_COMMANDS, ids=" ".join)
def test_a_management_command_never_creates_the_database(
    tmp_path: Path, command: list[str]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    result = relaychat(embedded_env(data_dir), *command, stdin="a strong password\n")
    assert result.exit_code == 1, result.output
    assert "relaychat db upgrade" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # Nothing written: no database file, and no generated secret either.
    assert list(data_dir.iterdir()) == []


async def _schema(url: str) -> tuple[set[str], str | None]:
    """The tables of the database at `url`, and its Alembic revision."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            names = set(await conn.run_sync(lambda sync: sync.dialect.get_table_names(sync)))
            version: str | None = None
            if "alembic_version" in names:
                version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        return names, version
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, never migrated: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        (tmp_path / "relaychat.db").touch(mode=0o600)
        yield f"sqlite+aiosqlite:///{tmp_path / 'relaychat.db'}"
        return
    base_url = required_url(DATABASE_ENV)
    name = f"relaychat_test_{RUN_ID}_unmigrated"
    in_thread(asyncio.run, _admin(base_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        in_thread(asyncio.run, _admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(base_url: str, statement: str) -> None:
    engine = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


BEHIND = [MANAGEMENT_COMMANDS[0], MANAGEMENT_COMMANDS[9], MANAGEMENT_COMMANDS[12]]


@pytest.mark.parametrize("command", BEHIND, ids=" ".join)
def test_a_management_command_refuses_a_database_not_at_head_and_leaves_it(
    unmigrated_url: str, tmp_path: Path, command: list[str]
) -> None:
    env = {**embedded_env(tmp_path), "DATABASE_URL": unmigrated_url}
    empty = relaychat(env, *command, stdin="a strong password\n")
    assert empty.exit_code == 1, empty.output
    assert "relaychat db upgrade" in empty.stderr and "no schema" in empty.stderr
    assert in_thread(asyncio.run, _schema(unmigrated_url)) == (set(), None)

    # One migration behind the newest: still refused, and not migrated.
    (head,) = migrate.head_revisions()
    behind = ScriptDirectory(str(migrate.MIGRATIONS_DIR)).get_revision(head).down_revision
    assert isinstance(behind, str)
    in_thread(migrate.upgrade, unmigrated_url, behind)
    before = in_thread(asyncio.run, _schema(unmigrated_url))
    result = relaychat(env, *command, stdin="a strong password\n")
    assert result.exit_code == 1, result.output
    assert f"it is at {behind}" in result.stderr and "relaychat db upgrade" in result.stderr
    assert in_thread(asyncio.run, _schema(unmigrated_url)) == before == (before[0], behind)
    assert "encryption_key" not in {p.name for p in tmp_path.iterdir()}
