"""Users' standing, cached per worker: a request costs a dict lookup, and an ended session
or a disabled account is refused on every worker at once, its event streams ended there."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.access import keys
from relaychat.domain.access.key_cache import KeyCache
from relaychat.domain.accounts.standing import StandingCache, standing_changed
from relaychat.errors import AppError, SessionEnded
from relaychat.services import Services
from relaychat.settings import Settings
from tests.support.backends import Backend
from tests.support.factories import make_key, make_user
from tests.support.sessions import sign_in
from tests.support.workers import second_worker


class CountingSessions:
    """A sessionmaker that counts the sessions opened through it."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self.opened = 0

    def __call__(self) -> AsyncSession:
        self.opened += 1
        return self.sessionmaker()


async def refusal(check: Callable[[], Awaitable[object]]) -> str | None:
    """The code `check` is refused with, or None if it passes."""
    try:
        await check()
    except AppError as refused:
        return str(refused.code)
    return None


async def eventually_refused(check: Callable[[], Awaitable[object]], code: str) -> None:
    for _ in range(200):
        if await refusal(check) == code:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"still not refused with {code}")


async def test_a_request_reads_the_standing_once_until_it_changes(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    claims = services.tokens.verify(user.access_token)
    counting = CountingSessions(services.sessionmaker)
    cache = StandingCache(
        services.bus, cast("async_sessionmaker[AsyncSession]", counting), ttl_seconds=3600
    )
    try:
        for _ in range(5):
            await cache.admit(claims)
        assert counting.opened == 1
        response = await client.post("/api/auth/logout-all", headers=user.headers)
        assert response.status_code == 204
        with pytest.raises(SessionEnded):
            await cache.admit(claims)
        assert counting.opened == 2
        # Nothing changed since: read from the cache again.
        await standing_changed(services.bus, "someone-else", end_streams=False)
        with pytest.raises(SessionEnded):
            await cache.admit(claims)
        assert counting.opened == 2
    finally:
        await cache.close()


async def test_ended_sessions_and_disabled_accounts_reach_every_worker(
    client: httpx.AsyncClient, services: Services, clean_backend: Backend, settings: Settings
) -> None:
    admin, user = await make_user(client), await make_user(client)
    key = await make_key(client, user)
    client.cookies.clear()
    claims = services.tokens.verify(user.access_token)
    async with second_worker(services, clean_backend, settings) as other:
        # Long TTLs: only the signal can explain a fresh answer.
        standing = StandingCache(other.bus, other.sessionmaker, ttl_seconds=3600)
        key_cache = KeyCache(other.bus, other.sessionmaker, ttl_seconds=3600)
        try:
            await standing.admit(claims)
            await keys.authenticate(None, key_cache, key.secret)
            async with other.bus.subscribe(user.id) as stream:
                ended = await client.post("/api/auth/logout-all", headers=user.headers)
                assert ended.status_code == 204
                await eventually_refused(lambda: standing.admit(claims), "invalid_token")
                for _ in range(200):
                    if stream.closed:
                        break
                    await asyncio.sleep(0.02)
                assert stream.closed, "the other worker's event stream of the user stayed open"

            again = await sign_in(client, user.email, user.password)
            fresh = services.tokens.verify(again.access_token)
            await standing.admit(fresh)
            disabled = await client.patch(
                f"/api/admin/users/{user.id}", json={"disabled": True}, headers=admin.headers
            )
            assert disabled.status_code == 200
            await eventually_refused(lambda: standing.admit(fresh), "user_disabled")
            await eventually_refused(
                lambda: keys.authenticate(None, key_cache, key.secret), "user_disabled"
            )

            enabled = await client.patch(
                f"/api/admin/users/{user.id}", json={"disabled": False}, headers=admin.headers
            )
            assert enabled.status_code == 200
            for _ in range(200):
                if await refusal(lambda: keys.authenticate(None, key_cache, key.secret)) is None:
                    break
                await asyncio.sleep(0.02)
            assert await refusal(lambda: keys.authenticate(None, key_cache, key.secret)) is None
            # Enabled again, its sessions stay ended.
            await eventually_refused(lambda: standing.admit(fresh), "invalid_token")
        finally:
            await standing.close()
            await key_cache.close()
