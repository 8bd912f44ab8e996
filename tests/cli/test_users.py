"""`relaychat users disable / enable / role`: the Admin page's changes for an operator, with
its rules, reaching running servers through Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from relaychat.domain.accounts.standing import StandingCache
from relaychat.domain.accounts.users import find_user_by_email
from relaychat.storage.db import create_sessionmaker
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.cli import make_users, relaychat_async, server_bus
from tests.support.live import server_env


@asynccontextmanager
async def server_standing(backend: Backend, prefix: str) -> AsyncIterator[StandingCache]:
    """A running server's standing cache, on the server's Redis channel when there is one."""
    async with server_bus(backend, prefix) as bus:
        # A long TTL: with Redis, only the CLI's signal can explain a fresh answer.
        cache = StandingCache(bus, create_sessionmaker(backend.engine), ttl_seconds=3600)
        try:
            yield cache
        finally:
            await cache.close()


async def user_id(backend: Backend, email: str) -> str:
    async with create_sessionmaker(backend.engine)() as session:
        user = await find_user_by_email(session, email)
    assert user is not None
    return user.id


async def test_an_operator_disables_enables_and_promotes(
    clean_backend: Backend, tmp_path: Path
) -> None:
    prefix = f"{REDIS_PREFIX_ROOT}cliusers:"
    env = server_env(clean_backend, tmp_path, prefix)
    await make_users(clean_backend, ("root@example.com", True), ("bee@example.com", False))
    bee = await user_id(clean_backend, "bee@example.com")

    async with server_standing(clean_backend, prefix) as standing:
        before = await standing.get(bee)
        assert before is not None and not before.disabled
        disabled = await relaychat_async(env, "users", "disable", "BEE@example.com")
        assert disabled.exit_code == 0, disabled.stderr
        assert disabled.stdout == "disabled bee@example.com\n"
        if clean_backend.redis_url:
            # The server's cache heard the CLI through Redis: its entry was forgotten.
            for _ in range(100):
                now = await standing.get(bee)
                if now is not None and now.disabled:
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("a server still takes a user the CLI disabled")
    listed = await relaychat_async(env, "users", "list")
    bee_line = next(line for line in listed.stdout.splitlines() if "bee@example.com" in line)
    assert "disabled" in bee_line

    # The instance keeps an enabled admin, whoever asks.
    last = await relaychat_async(env, "users", "disable", "root@example.com")
    assert last.exit_code == 1 and "must keep an enabled admin" in last.stderr
    demoted = await relaychat_async(env, "users", "role", "root@example.com", "user")
    assert demoted.exit_code == 1 and "must keep an enabled admin" in demoted.stderr

    enabled = await relaychat_async(env, "users", "enable", "bee@example.com")
    assert (enabled.exit_code, enabled.stdout) == (0, "enabled bee@example.com\n")
    promoted = await relaychat_async(env, "users", "role", "bee@example.com", "admin")
    assert (promoted.exit_code, promoted.stdout) == (0, "bee@example.com is now an admin\n")
    # Now another admin is enabled, so root may step down.
    stepped = await relaychat_async(env, "users", "role", "root@example.com", "user")
    assert (stepped.exit_code, stepped.stdout) == (0, "root@example.com is now a user\n")
    listed = await relaychat_async(env, "users", "list")
    bee_line = next(line for line in listed.stdout.splitlines() if "bee@example.com" in line)
    assert "admin" in bee_line and "active" in bee_line

    unknown = await relaychat_async(env, "users", "disable", "nobody@example.com")
    assert unknown.exit_code == 1 and "no user with email nobody@example.com" in unknown.stderr
    bad_role = await relaychat_async(env, "users", "role", "bee@example.com", "owner")
    assert bad_role.exit_code == 2
