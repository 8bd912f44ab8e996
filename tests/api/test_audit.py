"""The audit trail: recorded without secrets, listed newest first, filtered, paged and scoped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from relaychat.domain.access.audit import record_audit
from relaychat.services import Services
from tests.support.factories import TestUser, make_user
from tests.support.keys import create_key, keys_app_client

BASE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def kclient(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with keys_app_client(services) as http:
        yield http


async def record(services: Services, **fields: Any) -> None:
    values: dict[str, Any] = {
        "method": "POST",
        "path": "/api/messages/c1",
        "outcome": "accepted",
        "status": 202,
        "latency_ms": 3.5,
        **fields,
    }
    async with services.sessionmaker() as session:
        await record_audit(session, **values)


async def page(
    client: httpx.AsyncClient, user: TestUser, url: str, **params: Any
) -> dict[str, Any]:
    response = await client.get(url, params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def everything(
    client: httpx.AsyncClient, user: TestUser, url: str, **params: Any
) -> list[str]:
    """Every event id, following cursors."""
    ids: list[str] = []
    cursor = None
    while True:
        got = await page(client, user, url, **params, **({"cursor": cursor} if cursor else {}))
        ids += [e["id"] for e in got["events"]]
        cursor = got["next_cursor"]
        if cursor is None:
            return ids


@pytest.fixture
async def trail(
    kclient: httpx.AsyncClient, services: Services
) -> tuple[TestUser, TestUser, TestUser, str, str, str]:
    """An admin, two users with a key each, and audit rows for both keys and an env key."""
    alice, bob, carol = [await make_user(kclient) for _ in range(3)]
    created = await create_key(kclient, bob)
    bob_key, secret = created["key"]["id"], created["secret"]
    carol_key = (await create_key(kclient, carol))["key"]["id"]
    for i in range(5):
        await record(
            services,
            api_key_id=bob_key,
            key_owner_id=bob.id,
            outcome="accepted" if i % 2 == 0 else "refused",
            status=202 if i % 2 == 0 else 403,
            reason=None if i % 2 == 0 else "allowed_conversations",
            created_at=BASE + timedelta(minutes=i),
            client_address="203.0.113.7",
            conversation_id=f"sms-{i}",
            strategy="conversation_owner",
        )
    for i in range(2):
        await record(
            services,
            api_key_id=carol_key,
            key_owner_id=carol.id,
            created_at=BASE + timedelta(minutes=10 + i),
        )
    await record(
        services,
        api_key_id="env:abcd1234",
        outcome="rate_limited",
        status=429,
        created_at=BASE + timedelta(minutes=20),
    )
    return alice, bob, carol, bob_key, carol_key, secret


async def test_a_keys_audit_for_its_owner(
    kclient: httpx.AsyncClient, trail: tuple[TestUser, TestUser, TestUser, str, str, str]
) -> None:
    alice, bob, carol, bob_key, _, _ = trail
    url = f"/api/keys/{bob_key}/audit"
    events = (await page(kclient, bob, url))["events"]
    assert [e["conversation_id"] for e in events] == [f"sms-{i}" for i in (4, 3, 2, 1, 0)]
    assert {e["api_key_id"] for e in events} == {bob_key}
    first = events[-1]
    assert first == {
        "id": first["id"],
        "created_at": "2030-01-01T12:00:00Z",
        "api_key_id": bob_key,
        "key_owner_id": bob.id,
        "client_address": "203.0.113.7",
        "method": "POST",
        "path": "/api/messages/c1",
        "conversation_id": "sms-0",
        "user_id": None,
        "strategy": "conversation_owner",
        "outcome": "accepted",
        "reason": None,
        "status": 202,
        "latency_ms": 3.5,
        "message_id": None,
        "request_id": None,  # recorded outside a request
    }

    refused = (await page(kclient, bob, url, outcome="refused"))["events"]
    assert [(e["status"], e["reason"]) for e in refused] == [(403, "allowed_conversations")] * 2
    two = (BASE + timedelta(minutes=2)).isoformat()
    since = (await page(kclient, bob, url, since=two))["events"]
    until = (await page(kclient, bob, url, until=two))["events"]
    both = await page(kclient, bob, url, since=two, until=(BASE + timedelta(minutes=4)).isoformat())
    assert [e["conversation_id"] for e in since] == ["sms-4", "sms-3", "sms-2"]
    assert [e["conversation_id"] for e in until] == ["sms-1", "sms-0"]
    assert [e["conversation_id"] for e in both["events"]] == ["sms-3", "sms-2"]
    naive = (await page(kclient, bob, url, since="2030-01-01T12:02:00"))["events"]
    assert len(naive) == 3  # a time without a zone is UTC

    paged = await everything(kclient, bob, url, limit=2)
    assert paged == [e["id"] for e in events]
    assert len((await page(kclient, bob, url, limit=2))["events"]) == 2

    # Another user's key is missing; an admin sees any key's trail.
    hidden = await kclient.get(url, headers=carol.headers)
    assert (hidden.status_code, hidden.json()["code"]) == (404, "api_key_not_found")
    assert len((await page(kclient, alice, url))["events"]) == 5


async def test_the_whole_trail_is_for_admins_only(
    kclient: httpx.AsyncClient, trail: tuple[TestUser, TestUser, TestUser, str, str, str]
) -> None:
    alice, bob, _, bob_key, carol_key, _ = trail
    refused = await kclient.get("/api/admin/audit", headers=bob.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "admin_required")
    assert (await kclient.get("/api/admin/audit")).status_code == 401

    url = "/api/admin/audit"
    assert len(await everything(kclient, alice, url, limit=3)) == 8
    env = (await page(kclient, alice, url, key_id="env:abcd1234"))["events"]
    assert [(e["outcome"], e["status"]) for e in env] == [("rate_limited", 429)]
    carols = (await page(kclient, alice, url, key_id=carol_key))["events"]
    assert [e["created_at"] for e in carols] == ["2030-01-01T12:11:00Z", "2030-01-01T12:10:00Z"]
    bobs_refused = (await page(kclient, alice, url, key_id=bob_key, outcome="refused"))["events"]
    assert len(bobs_refused) == 2
    early = await page(kclient, alice, url, until=(BASE + timedelta(minutes=1)).isoformat())
    assert len(early["events"]) == 1


async def test_ties_page_without_loss_or_repeats(
    kclient: httpx.AsyncClient, services: Services
) -> None:
    alice = await make_user(kclient)
    for _ in range(5):
        await record(services, api_key_id="env:00000000", created_at=BASE)
    ids = await everything(kclient, alice, "/api/admin/audit", limit=2)
    assert len(ids) == len(set(ids)) == 5
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "bm90fGV2ZW4"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"since": "yesterday"}, "since"),
    ],
)
async def test_bad_queries_are_refused(
    kclient: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    alice = await make_user(kclient)
    response = await kclient.get("/api/admin/audit", params=params, headers=alice.headers)
    assert (response.status_code, response.json()["field"]) == (422, field)


async def test_the_trail_holds_no_secret(
    kclient: httpx.AsyncClient,
    services: Services,
    trail: tuple[TestUser, TestUser, TestUser, str, str, str],
) -> None:
    alice, bob, _, bob_key, _, secret = trail
    await record(
        services,
        api_key_id=bob_key,
        key_owner_id=bob.id,
        path=f"/api/messages/c1?api_key={secret}",
        reason="x" * 500,
        outcome="refused-for-a-long-reason",
        created_at=BASE + timedelta(hours=1),
    )
    for user, url in ((bob, f"/api/keys/{bob_key}/audit"), (alice, "/api/admin/audit")):
        response = await kclient.get(url, headers=user.headers)
        assert secret not in response.text and secret[17:] not in response.text
    newest = (await page(kclient, bob, f"/api/keys/{bob_key}/audit", limit=1))["events"][0]
    assert newest["path"] == "/api/messages/c1"
    # Over-long free-form fields are cut to fit rather than losing the record.
    assert (len(newest["reason"]), newest["outcome"]) == (120, "refused-for-a-lo")
