"""`relaychat keys`, run as an operator would: secrets printed once, changes seen by servers."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import Result

from relaychat.domain.access import keys
from relaychat.domain.access.key_cache import KeyCache
from relaychat.domain.access.keys import KeyPrincipal, KeyRefused
from relaychat.storage.db import create_sessionmaker
from relaychat.storage.models import ApiKey
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.cli import make_users, relaychat_async, server_bus
from tests.support.live import server_env

SECRET = re.compile(r"^secret: (rck_\S+)$", re.MULTILINE)
KEY_ID = re.compile(r"\(([0-9a-f-]{36})\)")


async def run(env: dict[str, str], *args: str) -> Result:
    """`relaychat keys ARGS`, in this process, while the test's event loop serves."""
    return await relaychat_async(env, "keys", *args)


@asynccontextmanager
async def server_cache(backend: Backend, prefix: str) -> AsyncIterator[KeyCache]:
    """A running server's key cache: on the server's Redis channel when there is one."""
    async with server_bus(backend, prefix) as bus:
        # A long TTL: with Redis, only the CLI's signal can explain a fresh answer.
        cache = KeyCache(bus, create_sessionmaker(backend.engine), ttl_seconds=3600)
        try:
            yield cache
        finally:
            await cache.close()


async def authenticate(backend: Backend, cache: KeyCache, secret: str) -> KeyPrincipal:
    async with create_sessionmaker(backend.engine)() as session:
        return await keys.authenticate(session, cache, secret)


async def refused_code(backend: Backend, cache: KeyCache, secret: str) -> str | None:
    try:
        await authenticate(backend, cache, secret)
    except KeyRefused as refused:
        return refused.code
    return None


async def test_keys_create_list_revoke_rotate(clean_backend: Backend, tmp_path: Path) -> None:
    prefix = f"{REDIS_PREFIX_ROOT}clikeys:"
    env = server_env(clean_backend, tmp_path, prefix)
    await make_users(clean_backend, ("ops@example.com", True), ("sam@example.com", False))
    created = await run(
        env,
        "create",
        "--owner", "sam@example.com",
        "--name", "sms gateway",
        "--conversations", "sms-*",
        "--conversations", "wa-*",
        "--required-metadata", "phoneNumber",
        "--rate-limit", "100/60",
        "--can-create-conversations",
        "--no-respond",
        "--expires-in-days", "30",
        "--default-endpoint", "fake",
        "--default-model", "fake-model",
        "--max-tokens-per-day", "50000",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    secret_match, id_match = SECRET.search(created.stdout), KEY_ID.search(created.stdout)
    assert secret_match and id_match, created.stdout
    secret, key_id = secret_match.group(1), id_match.group(1)
    assert "created key sms gateway" in created.stdout
    assert "not shown again" in created.stderr

    async with create_sessionmaker(clean_backend.engine)() as session:
        row = await session.get(ApiKey, key_id)
    assert row is not None and row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.expires_at is not None
    assert abs(row.expires_at - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)

    async with server_cache(clean_backend, prefix) as cache:
        perms = (await authenticate(clean_backend, cache, secret)).permissions
        assert perms.allowed_conversations == ["sms-*", "wa-*"]
        assert perms.required_metadata == ["phoneNumber"]
        assert perms.rate_limit is not None
        assert (perms.rate_limit.requests, perms.rate_limit.window) == (100, 60)
        assert perms.can_create_conversations and not perms.can_respond
        assert not perms.respond_default
        assert (perms.default_endpoint, perms.default_model) == ("fake", "fake-model")
        assert perms.max_tokens_per_day == 50000

        system = await run(env, "create", "--owner", "ops@example.com", "--name", "ops", "--system")
        assert "created system key ops" in system.stdout, system.stderr
        listed = await run(env, "list")
        assert listed.exit_code == 0, listed.stderr
        for text in (key_id, "sms gateway", "sam@example.com", "sms-*, wa-*", "100/60s", "ops"):
            assert text in listed.stdout
        assert secret not in listed.stdout and secret[17:] not in listed.stdout
        mine = await run(env, "list", "--owner", "SAM@example.com")
        assert "sms gateway" in mine.stdout and "ops@example.com" not in mine.stdout

        rotated = await run(env, "rotate", key_id, "--grace-seconds", "600")
        assert rotated.exit_code == 0, rotated.stderr
        new_match = SECRET.search(rotated.stdout)
        assert new_match and "old secret works until" in rotated.stdout
        new = new_match.group(1)
        assert new != secret and new[:16] == secret[:16]
        for works in (secret, new):
            assert await refused_code(clean_backend, cache, works) is None

        revoked = await run(env, "revoke", key_id)
        assert revoked.exit_code == 0 and f"revoked {key_id}" in revoked.stdout
        if clean_backend.redis_url:
            # The server's cache heard the CLI through Redis.
            for _ in range(100):
                if await refused_code(clean_backend, cache, new) == "api_key_revoked":
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("a server's cache still accepts a key the CLI revoked")
    # Without Redis a server learns within its cache TTL; a fresh cache knows at once.
    async with server_cache(clean_backend, prefix) as cache:
        for gone in (secret, new):
            assert await refused_code(clean_backend, cache, gone) == "api_key_revoked"
    after = await run(env, "list")
    assert "revoked" in after.stdout
    again = await run(env, "rotate", key_id)
    assert again.exit_code == 1 and "revoked" in again.stderr


async def test_keys_cli_refusals(clean_backend: Backend, tmp_path: Path) -> None:
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}clikeys2:")
    await make_users(clean_backend, ("a@example.com", True), ("b@example.com", False))

    nobody = await run(env, "create", "--owner", "ghost@example.com", "--name", "x")
    assert nobody.exit_code == 1 and "no user with email" in nobody.stderr
    bad_rate = await run(
        env, "create", "--owner", "a@example.com", "--name", "x", "--rate-limit", "lots"
    )
    assert bad_rate.exit_code == 2 and "REQUESTS/SECONDS" in bad_rate.stderr
    bad_budget = await run(
        env, "create", "--owner", "a@example.com", "--name", "x", "--max-tokens-per-day", "0"
    )
    assert bad_budget.exit_code == 2 and "max-tokens-per-day" in bad_budget.stderr
    not_admin = await run(env, "create", "--owner", "b@example.com", "--name", "x", "--system")
    assert not_admin.exit_code == 1 and "only an admin" in not_admin.stderr
    missing = await run(env, "revoke", "no-such-key")
    assert missing.exit_code == 1 and "no API key" in missing.stderr
