"""The webhook routes cache: a change to an endpoint reaches every worker, and nothing else
empties it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import insert

from relaychat.domain.ids import new_id
from relaychat.domain.outbound.webhook_routes import Route, WebhookRoutes
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.models import WebhookEndpoint
from relaychat.storage.tables import WEBHOOK_ENDPOINTS
from relaychat.storage.types import utcnow
from tests.support.backends import Backend
from tests.support.factories import make_key, make_user
from tests.support.workers import second_worker


async def routes_of(
    services: Services, routes: WebhookRoutes, user_id: str, key_id: str | None = None
) -> tuple[Route, ...]:
    async with services.sessionmaker() as session:
        return await routes.of(session, user_id, key_id)


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.02)
    pytest.fail(what)


async def test_an_endpoint_change_reaches_every_worker(
    client: httpx.AsyncClient, services: Services, clean_backend: Backend, settings: Settings
) -> None:
    alice = await make_user(client)
    async with second_worker(services, clean_backend, settings) as other:
        # A long TTL: only the signal can explain a fresh answer there.
        there = WebhookRoutes(other.bus, ttl_seconds=3600)
        try:
            here = services.routes

            async def there_sees(expected: list[tuple[str, frozenset[str]]]) -> None:
                async def check() -> bool:
                    found = await routes_of(other, there, alice.id)
                    return [(r.id, r.events) for r in found] == expected

                await eventually(check, f"the other worker does not see {expected}")

            assert await routes_of(other, there, alice.id) == ()
            assert await routes_of(services, here, alice.id) == ()

            created = await client.post(
                "/api/webhooks",
                json={"url": "https://example.com/h", "events": ["message.created"]},
                headers=alice.headers,
            )
            hook_id = created.json()["webhook"]["id"]
            # This worker, the one that committed, routes by the new endpoint at once.
            [route] = await routes_of(services, here, alice.id)
            assert (route.id, route.user_id, route.events) == (
                hook_id,
                alice.id,
                frozenset({"message.created"}),
            )
            await there_sees([(hook_id, frozenset({"message.created"}))])

            base = f"/api/webhooks/{hook_id}"
            await client.patch(base, json={"events": ["message.failed"]}, headers=alice.headers)
            assert [r.events for r in await routes_of(services, here, alice.id)] == [
                frozenset({"message.failed"})
            ]
            await there_sees([(hook_id, frozenset({"message.failed"}))])

            await client.patch(base, json={"enabled": False}, headers=alice.headers)
            assert await routes_of(services, here, alice.id) == ()
            await there_sees([])

            await client.patch(base, json={"enabled": True}, headers=alice.headers)
            await there_sees([(hook_id, frozenset({"message.failed"}))])
            assert (await client.delete(base, headers=alice.headers)).status_code == 204
            assert await routes_of(services, here, alice.id) == ()
            await there_sees([])
        finally:
            await there.close()


async def test_a_key_scope_has_its_own_routes(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await make_user(client)
    key = await make_key(client, alice)
    own = await client.post(
        "/api/webhooks", json={"url": "https://example.com/all"}, headers=alice.headers
    )
    keyed = await client.post(
        "/api/webhooks",
        json={"url": "https://example.com/key", "api_key_id": key.id},
        headers=alice.headers,
    )
    own_id, keyed_id = own.json()["webhook"]["id"], keyed.json()["webhook"]["id"]
    by_key = await routes_of(services, services.routes, alice.id, key.id)
    assert {r.id for r in by_key} == {own_id, keyed_id}
    # A person's own message, or another key's, is not the key's endpoint's business.
    assert [r.id for r in await routes_of(services, services.routes, alice.id)] == [own_id]
    async with services.sessionmaker() as session:
        many = await services.routes.of_many(
            session, [(alice.id, None), (alice.id, key.id), ("nobody", None)]
        )
    assert {scope: {r.id for r in found} for scope, found in many.items()} == {
        (alice.id, None): {own_id},
        (alice.id, key.id): {own_id, keyed_id},
        ("nobody", None): set(),
    }


async def test_only_a_committed_change_of_routing_empties_the_cache(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await make_user(client)
    hook_id = (
        await client.post(
            "/api/webhooks", json={"url": "https://example.com/h"}, headers=alice.headers
        )
    ).json()["webhook"]["id"]
    assert len(await routes_of(services, services.routes, alice.id)) == 1
    # Written behind the ORM's back, so only a later eviction can reveal it.
    now = utcnow()
    async with services.sessionmaker() as session:
        await session.execute(
            insert(WEBHOOK_ENDPOINTS).values(
                id=new_id(),
                user_id=alice.id,
                url="https://example.com/hidden",
                secret_encrypted="x",
                events=["message.created"],
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        )
        await session.commit()
    assert len(await routes_of(services, services.routes, alice.id)) == 1

    async with services.sessionmaker() as session:
        endpoint = await session.get(WebhookEndpoint, hook_id)
        assert endpoint is not None
        endpoint.failing_since = now  # a delivery's bookkeeping, not routing
        await session.commit()
    assert len(await routes_of(services, services.routes, alice.id)) == 1

    async with services.sessionmaker() as session:
        endpoint = await session.get(WebhookEndpoint, hook_id)
        assert endpoint is not None
        endpoint.enabled = False
        await session.flush()
        await session.rollback()
    assert len(await routes_of(services, services.routes, alice.id)) == 1

    async with services.sessionmaker() as session:
        endpoint = await session.get(WebhookEndpoint, hook_id)
        assert endpoint is not None
        endpoint.events = ["message.failed"]
        await session.commit()
    found = await routes_of(services, services.routes, alice.id)
    assert {r.events for r in found} == {
        frozenset({"message.created"}),
        frozenset({"message.failed"}),
    }
