"""`relaychat db backup` / `db restore`: a copy made during a write burst holds every message
acknowledged before it began, and restores onto a new data dir whose server reads the stored
webhook secrets and accepts the old session tokens."""

from __future__ import annotations

import asyncio
import sqlite3
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from relaychat.crypto import SecretBox
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.cli import relaychat_async
from tests.support.factories import TestUser, make_conversation, make_user
from tests.support.live import running_server, server_env
from tests.support.webhooks import Receiver, register


@dataclass(frozen=True)
class Embedded:
    """The embedded SQLite database in the data dir, as `make serve` runs: what a backup copies."""

    database_url: str | None = None
    redis_url: str | None = None


async def burst(
    http: httpx.AsyncClient, user: TestUser, cid: str, acked: list[str], stop: asyncio.Event
) -> None:
    """Post messages one after another until `stop`, recording each acknowledged id."""
    n = 0
    while not stop.is_set():
        n += 1
        sent = await http.post(
            f"/api/messages/{cid}",
            json={"content": f"burst {n}", "respond": False},
            headers=user.headers,
        )
        assert sent.status_code == 201, sent.text
        acked.append(sent.json()["message"]["message_id"])


async def grown(acked: list[str], count: int, writers: list[asyncio.Task[None]]) -> None:
    """Until `count` messages were acknowledged; a writer's failure fails the test at once."""
    while len(acked) < count:
        for writer in writers:
            if writer.done():
                writer.result()
        await asyncio.sleep(0.01)


@pytest.mark.server
async def test_a_backup_during_a_write_burst_restores_on_a_new_machine(
    tmp_path: Path, receiver: Receiver
) -> None:
    (tmp_path / "data").mkdir()
    env = server_env(Embedded(), tmp_path / "data", f"{REDIS_PREFIX_ROOT}backup:")
    env.update(WEBHOOK_ALLOW_PRIVATE_NETWORKS="true")
    archive = tmp_path / "backups" / "relaychat.tar.gz"
    acked: list[str] = []
    async with running_server(env) as base, httpx.AsyncClient(base_url=base) as http:
        user = await make_user(http)
        hook = await register(http, user, receiver, events=["message.created"])
        cid = (await make_conversation(http, user))["conversation_id"]
        stop = asyncio.Event()
        writers = [asyncio.create_task(burst(http, user, cid, acked, stop)) for _ in range(4)]
        await grown(acked, 40, writers)
        before = list(acked)
        made = await relaychat_async(env, "db", "backup", str(archive))
        after_count = len(acked)
        # The burst goes on a little after the copy, as a real server's would.
        await grown(acked, after_count + 20, writers)
        stop.set()
        await asyncio.gather(*writers)
        assert made.exit_code == 0, made.stderr
        assert "with jwt_secret, encryption_key" in made.stdout

        # A server is running on the data dir: a restore is refused and changes nothing.
        refused = await relaychat_async(env, "db", "restore", str(archive))
        assert refused.exit_code == 1
        assert "a server is running" in refused.stderr
        assert not list((tmp_path / "data").glob("*.before-restore-*"))

    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == [
            "encryption_key",
            "jwt_secret",
            "manifest.json",
            "relaychat.db",
        ]

    # A new machine: an empty data dir, no secrets of its own.
    (tmp_path / "fresh").mkdir()
    fresh = server_env(Embedded(), tmp_path / "fresh", f"{REDIS_PREFIX_ROOT}backup2:")
    fresh.update(WEBHOOK_ALLOW_PRIVATE_NETWORKS="true")
    restored = await relaychat_async(fresh, "db", "restore", str(archive))
    assert restored.exit_code == 0, restored.stderr
    key = (tmp_path / "fresh" / "encryption_key").read_text()
    assert key == (tmp_path / "data" / "encryption_key").read_text()
    assert (tmp_path / "fresh" / "encryption_key").stat().st_mode & 0o777 == 0o600

    with sqlite3.connect(tmp_path / "fresh" / "relaychat.db") as db:
        (sealed,) = db.execute(
            "SELECT secret_encrypted FROM webhook_endpoints WHERE id = ?", (hook["id"],)
        ).fetchone()
    assert (tmp_path / "fresh" / "relaychat.db").stat().st_mode & 0o777 == 0o600
    assert SecretBox([key]).decrypt(sealed) == receiver.secret

    async with running_server(fresh) as base, httpx.AsyncClient(base_url=base) as http:
        # The old session token: the JWT secret came back with the database.
        listed = await http.get(f"/api/messages/{cid}", headers=user.headers)
        assert listed.status_code == 200, listed.text
        stored = {m["message_id"] for m in listed.json()["messages"]}
    assert set(before) <= stored
    # And nothing else: every stored message was acknowledged to its sender.
    assert stored <= set(acked)


async def test_a_restore_keeps_what_it_replaces(tmp_path: Path) -> None:
    env = server_env(Embedded(), tmp_path / "data", f"{REDIS_PREFIX_ROOT}backup3:")
    upgraded = await relaychat_async(env, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    created = await relaychat_async(
        env,
        "users",
        "create",
        "--email",
        "first@example.com",
        "--name",
        "First",
        stdin="pw-123456789\n",
    )
    assert created.exit_code == 0, created.stderr
    archive = tmp_path / "one.tar.gz"
    made = await relaychat_async(env, "db", "backup", str(archive))
    assert made.exit_code == 0, made.stderr

    restored = await relaychat_async(env, "db", "restore", str(archive))
    assert restored.exit_code == 0, restored.stderr
    aside = list((tmp_path / "data").glob("relaychat.db.before-restore-*Z"))
    assert len(aside) == 1 and "kept what it replaced as" in restored.stdout
    # Secrets that did not change are not moved aside.
    assert not list((tmp_path / "data").glob("*_secret.before-restore-*"))
    assert not list((tmp_path / "data").glob("encryption_key.before-restore-*"))


async def test_a_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    env = server_env(Embedded(), tmp_path / "data", f"{REDIS_PREFIX_ROOT}backup4:")
    bogus = tmp_path / "bogus.tar.gz"
    with tarfile.open(bogus, "w:gz") as tar:
        (tmp_path / "x").write_text("x")
        tar.add(tmp_path / "x", arcname="../../etc/evil")
    refused = await relaychat_async(env, "db", "restore", str(bogus))
    assert refused.exit_code == 1
    assert "not a relaychat backup" in refused.stderr
    assert not (tmp_path / "data" / "relaychat.db").exists()
    missing = await relaychat_async(env, "db", "restore", str(tmp_path / "nothing.tar.gz"))
    assert missing.exit_code == 1 and "no backup at" in missing.stderr


async def test_postgresql_gets_the_pg_dump_command(clean_backend: Backend, tmp_path: Path) -> None:
    env = server_env(clean_backend, tmp_path / "data", f"{REDIS_PREFIX_ROOT}backup5:")
    archive = tmp_path / "pg.dump"
    made = await relaychat_async(env, "db", "backup", str(archive))
    if clean_backend.database_url.startswith("sqlite"):
        # The suite's SQLite backend is a file outside the data dir: copied all the same.
        assert made.exit_code == 0, made.stderr
        assert "without" not in made.stdout and archive.is_file()
        return
    assert made.exit_code == 1
    assert "pg_dump --format=custom --file" in made.stderr and "postgresql://" in made.stderr
    # The command is printed for a person to copy; a password in it would end up in logs.
    env["DATABASE_URL"] = (
        make_url(clean_backend.database_url)
        .set(password="hunter2-secret")
        .render_as_string(hide_password=False)
    )
    hinted = await relaychat_async(env, "db", "backup", str(archive))
    assert hinted.exit_code == 1 and "hunter2" not in hinted.stderr
    assert "postgres@" in hinted.stderr or "@127.0.0.1" in hinted.stderr
    assert not archive.exists()
    restore = await relaychat_async(env, "db", "restore", str(archive))
    assert restore.exit_code == 1 and "pg_restore" in restore.stderr
