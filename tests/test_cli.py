"""The relaychat command, run as a user would run it."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.live import relaychat, server_env


def test_db_upgrade_on_a_fresh_sqlite_data_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env["RELAYCHAT_DATA_DIR"] = str(tmp_path / "fresh")
    result = relaychat(env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fresh" / "relaychat.db").exists()
    again = relaychat(env, "db", "upgrade")
    assert again.returncode == 0, again.stderr


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
    assert created.returncode == 0, created.stderr
    assert "created admin root@example.com" in created.stdout
    plain = relaychat(
        env, "users", "create", "--email", "b@example.com", "--name", "Bee", stdin="password2\n"
    )
    assert "created user b@example.com" in plain.stdout

    listed = relaychat(env, "users", "list")
    assert listed.returncode == 0, listed.stderr
    assert "root@example.com" in listed.stdout and "b@example.com" in listed.stdout
    assert "admin" in listed.stdout

    duplicate = relaychat(
        env, "users", "create", "--email", "b@example.com", "--name", "B", stdin="password3\n"
    )
    assert duplicate.returncode == 1
    assert "already registered" in duplicate.stderr
    weak = relaychat(
        env, "users", "create", "--email", "c@example.com", "--name", "C", stdin="short\n"
    )
    assert weak.returncode == 1
    assert "at least 8 characters" in weak.stderr


def test_several_workers_without_redis_are_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env["RELAYCHAT_DATA_DIR"] = str(tmp_path)
    result = relaychat(env, "serve", "--workers", "2", "--port", "1")
    assert result.returncode == 2
    assert "needs REDIS_URL" in result.stderr
