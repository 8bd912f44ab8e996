"""External messages: who may post where, limits, idempotency and owner resolution."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from relaychat.app import create_app
from relaychat.services import Services
from relaychat.settings import Settings
from tests.support.backends import Backend, row_counts
from tests.support.chat import make_agent
from tests.support.factories import (
    TestKey,
    TestUser,
    make_conversation,
    make_key,
    make_sessionless_user,
)
from tests.support.settings import VERBATIM_KEY

SYSTEM = {"x-api-key": VERBATIM_KEY}


async def expire(backend: Backend, key: TestKey) -> None:
    """Let the key's lifetime run out (the API only accepts expiry dates in the future)."""
    async with backend.engine.begin() as conn:
        await conn.execute(
            text("UPDATE api_keys SET expires_at = :past WHERE id = :id"),
            {"past": datetime.now(UTC) - timedelta(seconds=1), "id": key.id},
        )


def external(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"role": "external", "content": text, "respond": False, **extra}


async def post(
    client: httpx.AsyncClient, cid: str, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.post(f"/api/messages/{cid}", json=external(**body), headers=headers)


async def test_missing_unknown_revoked_and_expired_keys(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner))["conversation_id"]
    revoked = await make_key(client, owner)
    await client.delete(f"/api/keys/{revoked.id}", headers=owner.headers)
    expired = await make_key(client, owner)
    await expire(clean_backend, expired)
    before = await row_counts(clean_backend)
    cases = [
        ({}, 401),
        ({"x-api-key": "rck_000000000000_nope"}, 403),
        ({"x-api-key": "not-even-shaped"}, 403),
        (revoked.headers, 403),
        (expired.headers, 403),
    ]
    for headers, status in cases:
        response = await post(client, cid, headers)
        assert response.status_code == status, (headers, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    after = await row_counts(clean_backend)
    assert {k: v for k, v in after.items() if k != "audit_events"} == {
        k: v for k, v in before.items() if k != "audit_events"
    }


async def test_bearer_key_works_and_a_jwt_is_not_a_key(client: httpx.AsyncClient) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner))["conversation_id"]
    key = await make_key(client, owner)
    ok = await post(client, cid, {"Authorization": f"Bearer {key.secret}"})
    assert ok.status_code == 201, ok.text
    jwt_only = await post(client, cid, owner.headers)
    assert jwt_only.status_code == 403  # a user token is not an API key


async def test_authorization_matrix(client: httpx.AsyncClient, clean_backend: Backend) -> None:
    alice = await make_sessionless_user(client)  # admin
    bob = await make_sessionless_user(client)
    a_convo = (await make_conversation(client, alice))["conversation_id"]
    b_convo = (await make_conversation(client, bob))["conversation_id"]
    a_key, b_key = await make_key(client, alice), await make_key(client, bob)
    a_system = await make_key(client, alice, system=True)
    refused_system = await client.post(
        "/api/keys", json={"name": "x", "system": True}, headers=bob.headers
    )
    assert refused_system.status_code == 403

    expectations = [
        (a_key, a_convo, 201),
        (a_key, b_convo, 404),  # another user's conversation does not exist for this key
        (b_key, b_convo, 201),
        (b_key, a_convo, 404),
        (a_system, a_convo, 201),
        (a_system, b_convo, 201),
        (TestKey("env", VERBATIM_KEY), b_convo, 201),
    ]
    for key, cid, status in expectations:
        response = await post(client, cid, key.headers)
        assert response.status_code == status, (key.id, cid, response.text)
    # A user's key may not name another user; a system key may.
    named = await post(client, a_convo, a_key.headers, user=bob.email)
    assert named.status_code == 403
    system_named = await client.post(
        "/api/messages/new-for-bob",
        json=external(user=bob.email),
        headers=a_system.headers,
    )
    # May name, but may not create conversations: the conversation does not exist.
    assert (system_named.status_code, system_named.json()["code"]) == (
        404,
        "conversation_not_found",
    )
    env_named = await post(client, "new-for-bob", SYSTEM, user=bob.email)
    assert env_named.status_code == 201
    convo = (await client.get("/api/convos/new-for-bob", headers=bob.headers)).json()
    assert convo["conversation_id"] == "new-for-bob"

    # Keys, agents and audit of one user are invisible to the other.
    assert (await client.get(f"/api/keys/{a_key.id}", headers=bob.headers)).status_code == 404
    assert (await client.delete(f"/api/keys/{a_key.id}", headers=bob.headers)).status_code == 404
    agent = await make_agent(client, alice)
    via_key = await post(
        client, b_convo, b_key.headers, respond=True, metadata={"agent_id": agent["agent_id"]}
    )
    assert via_key.status_code == 404 and via_key.json()["code"] == "agent_not_found"
    assert (await client.get(f"/api/keys/{a_key.id}/audit", headers=bob.headers)).status_code == 404
    assert (await client.get("/api/admin/audit", headers=bob.headers)).status_code == 403


RULES = [
    ({"allowed_conversations": ["sms-*"]}, "other-1", {}, "allowed_conversations"),
    ({"required_metadata": ["phoneNumber"]}, "c-1", {}, "required_metadata"),
    ({"can_respond": False}, "c-1", {"respond": True}, "can_respond"),
    ({"allowed_endpoints": ["anthropic"]}, "c-1", {"respond": True}, "allowed_endpoints"),
]


@pytest.mark.parametrize(("permissions", "cid", "body", "rule"), RULES)
async def test_each_permission_is_enforced_and_named(
    client: httpx.AsyncClient,
    clean_backend: Backend,
    permissions: dict[str, Any],
    cid: str,
    body: dict[str, Any],
    rule: str,
) -> None:
    owner = await make_sessionless_user(client)
    for existing in ("c-1", "other-1"):
        await make_conversation(client, owner, conversation_id=existing, endpoint="fake")
    key = await make_key(client, owner, **permissions)
    before = await row_counts(clean_backend)
    response = await post(client, cid, key.headers, **body)
    assert response.status_code == 403, response.text
    assert response.json()["rule"] == rule
    assert response.json()["code"] == "permission_denied"
    after = await row_counts(clean_backend)
    assert {k: v for k, v in after.items() if k != "audit_events"} == {
        k: v for k, v in before.items() if k != "audit_events"
    }


async def test_allowed_agents_and_patterns_allow_what_they_name(
    client: httpx.AsyncClient,
) -> None:
    owner = await make_sessionless_user(client)
    await client.patch("/api/user", json={"phone_number": "+14155552671"}, headers=owner.headers)
    agent = await make_agent(client, owner)
    key = await make_key(
        client,
        owner,
        allowed_conversations=["sms-*"],
        can_create_conversations=True,
        allowed_agents=[agent["agent_id"]],
        default_agent_id=agent["agent_id"],
        required_metadata=["phoneNumber", "source"],
    )
    ok = await client.post(
        "/api/messages/sms-+14155552671",
        json={
            "role": "external",
            "content": "hi",
            "metadata": {"phoneNumber": "+14155552671", "source": "sms"},
        },
        headers=key.headers,
    )
    assert ok.status_code == 202, ok.text
    convo = (await client.get("/api/convos/sms-+14155552671", headers=owner.headers)).json()
    assert (convo["endpoint"], convo["agent_id"]) == ("agents", agent["agent_id"])
    other = await make_agent(client, owner)
    refused = await client.post(
        "/api/messages/sms-+14155552671",
        json={
            "role": "external",
            "content": "hi",
            "metadata": {"phoneNumber": "+1", "source": "sms", "agent_id": other["agent_id"]},
        },
        headers=key.headers,
    )
    assert refused.status_code in (403, 422)


PHONES = [
    ("+14155552671", "owner"),
    ("(415) 555-2671", "owner"),
    ("415.555.2671", "owner"),
    ("whatsapp:+14155552671", "owner"),
    ("tel:+1-415-555-2671", "owner"),
    ("+1 415 555 2671 ext. 99", "owner"),
    ("+1-800-FLOWERS", "flowers"),
    ("+44 20 7946 0958", "unresolved"),
    ("12345", "invalid"),
    ("not a number", "invalid"),
]


@pytest.mark.parametrize(("raw", "outcome"), PHONES)
async def test_phone_numbers_resolve_the_owner(
    client: httpx.AsyncClient, raw: str, outcome: str
) -> None:
    owner = await make_sessionless_user(client)
    await client.patch("/api/user", json={"phone_number": "+14155552671"}, headers=owner.headers)
    florist = await make_sessionless_user(client)
    await client.patch("/api/user", json={"phone_number": "+18003569377"}, headers=florist.headers)
    response = await client.post(
        "/api/messages/sms-thread",
        json=external(metadata={"phoneNumber": raw, "source": "sms"}),
        headers=SYSTEM,
    )
    if outcome == "invalid":
        assert (response.status_code, response.json()["code"]) == (422, "invalid_phone_number")
        return
    if outcome == "unresolved":  # nobody to own it: the conversation cannot be created
        assert (response.status_code, response.json()["code"]) == (404, "conversation_not_found")
        assert "phone_number" in response.json()["tried"]
        return
    assert response.status_code == 201, response.text
    expected = owner if outcome == "owner" else florist
    listed = await client.get("/api/convos/sms-thread", headers=expected.headers)
    assert listed.status_code == 200


async def _flood(
    clients: list[httpx.AsyncClient], cid: str, key: TestKey, total: int
) -> list[httpx.Response]:
    async def one(i: int) -> httpx.Response:
        return await clients[i % len(clients)].post(
            f"/api/messages/{cid}", json=external(f"m{i}"), headers=key.headers
        )

    return list(await asyncio.gather(*(one(i) for i in range(total))))


async def test_rate_limit_accepts_exactly_the_limit(
    client: httpx.AsyncClient,
    services: Services,
    clean_backend: Backend,
    settings: Settings,
) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner))["conversation_id"]
    key = await make_key(client, owner, rate_limit={"requests": 100, "window": 600})
    clients = [client]
    second: Services | None = None
    if clean_backend.redis_url:
        # A second worker on the same PostgreSQL and Redis shares the count.
        second = Services.build(settings, engine=clean_backend.engine)
        await second.start()
        transport = httpx.ASGITransport(app=create_app(services=second))
        clients.append(httpx.AsyncClient(transport=transport, base_url="https://w2"))
    try:
        responses = await _flood(clients, cid, key, 1000)
    finally:
        if second is not None:
            await clients[1].aclose()
            await second.close()
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 100
    assert statuses.count(429) == 900
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-limit"] == "100"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["ratelimit-policy"] == "100;w=600"
    assert limited.json()["code"] == "rate_limited"
    accepted = next(r for r in responses if r.status_code == 201)
    assert "ratelimit" in accepted.headers
    assert (await row_counts(clean_backend))["messages"] == 100


async def test_idempotency_stores_once_and_replays(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner))["conversation_id"]
    headers = {**SYSTEM, "Idempotency-Key": "order-42"}
    responses = await asyncio.gather(
        *(
            client.post(f"/api/messages/{cid}", json=external("once"), headers=headers)
            for _ in range(50)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}
    assert (await row_counts(clean_backend))["messages"] == 1
    firsts = [r for r in responses if r.status_code == 201]
    replay = await client.post(f"/api/messages/{cid}", json=external("once"), headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["message"]["message_id"] == firsts[0].json()["message"]["message_id"]
    different = await client.post(f"/api/messages/{cid}", json=external("twice"), headers=headers)
    assert (different.status_code, different.json()["code"]) == (422, "idempotency_key_reused")
    assert (await row_counts(clean_backend))["messages"] == 1


async def test_unresolvable_owner_says_what_was_tried(client: httpx.AsyncClient) -> None:
    await make_sessionless_user(client)
    response = await post(client, "nobody-owns-this", SYSTEM)
    assert (response.status_code, response.json()["code"]) == (404, "conversation_not_found")
    assert response.json()["tried"] == [
        "explicit_user",
        "conversation_owner",
        "user_token",
        "request_user",
        "phone_number",
        "key_owner",
    ]


async def test_a_users_token_alongside_the_key_names_the_owner(
    client: httpx.AsyncClient,
) -> None:
    user: TestUser = await make_sessionless_user(client)
    response = await client.post(
        "/api/messages/with-token",
        json=external(),
        headers={**SYSTEM, "Authorization": f"Bearer {user.access_token}"},
    )
    assert response.status_code == 201, response.text
    assert (await client.get("/api/convos/with-token", headers=user.headers)).status_code == 200


async def test_refused_uses_of_a_known_key_reach_its_owners_audit(
    client: httpx.AsyncClient, services: Services
) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner))["conversation_id"]
    key = await make_key(client, owner)
    await client.delete(f"/api/keys/{key.id}", headers=owner.headers)
    refused = await post(client, cid, key.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "api_key_revoked")
    assert "owner_id" not in refused.json()
    await services.audit.flush()
    events = (await client.get(f"/api/keys/{key.id}/audit", headers=owner.headers)).json()
    assert [(e["outcome"], e["reason"]) for e in events["events"]] == [
        ("refused", "api_key_revoked")
    ]


async def test_a_users_key_answers_alike_whether_another_account_exists(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    alice, bob = await make_sessionless_user(client), await make_sessionless_user(client)
    await client.patch("/api/user", json={"phone_number": "+14155552671"}, headers=bob.headers)
    cid = (await make_conversation(client, alice))["conversation_id"]
    key = await make_key(client, alice, can_name_user=True, can_create_conversations=True)
    before = await row_counts(clean_backend)

    def shape(response: httpx.Response) -> tuple[int, str, str, str | None]:
        body = response.json()
        return response.status_code, body["code"], body["detail"], body.get("rule")

    for target in (cid, "new-one"):
        named = [await post(client, target, key.headers, user=ref) for ref in (bob.email, bob.id)]
        unknown = [
            await post(client, target, key.headers, user=ref)
            for ref in ("nobody@example.com", "00000000-0000-4000-8000-000000000000")
        ]
        assert {shape(r) for r in named + unknown} == {
            (403, "permission_denied", "a user's key acts for its owner only", "owner")
        }
    after = await row_counts(clean_backend)
    assert {k: v for k, v in after.items() if k != "audit_events"} == {
        k: v for k, v in before.items() if k != "audit_events"
    }
    # The key may name its owner; a phone number acts for its owner only, whoever has it.
    own = await post(client, cid, key.headers, user=alice.email.upper())
    assert own.status_code == 201, own.text
    by_phone = [
        await post(client, f"new-{i}", key.headers, metadata={"phoneNumber": phone})
        for i, phone in enumerate(("+14155552671", "+14155550000"))
    ]
    assert [r.status_code for r in by_phone] == [201, 201], [r.text for r in by_phone]
    for i in range(2):
        assert (await client.get(f"/api/convos/new-{i}", headers=alice.headers)).status_code == 200


async def test_the_readme_request_on_a_fresh_install_is_conversation_not_found(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    body = {
        "role": "external",
        "content": [{"type": "text", "text": "This is a test external message"}],
    }
    path = "/api/messages/5c79d482-9b80-45f6-bbf2-9abe17335e55"
    fresh = await client.post(path, json=body, headers=SYSTEM)  # not even a user yet
    owner = await make_sessionless_user(client)
    with_a_user = await client.post(path, json=body, headers=SYSTEM)
    key = await make_key(client, owner)  # may not create conversations
    may_not_create = await client.post(path, json=body, headers=key.headers)
    for response in (fresh, with_a_user, may_not_create):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "conversation_not_found"
    assert "name its owner" in fresh.json()["detail"]
    assert "can_create_conversations" in may_not_create.json()["detail"]
    assert (await row_counts(clean_backend))["conversations"] == 0


async def test_an_idempotent_retry_of_a_wait_replays_the_reply(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner, endpoint="fake"))["conversation_id"]
    headers = {**SYSTEM, "Prefer": "wait=20", "Idempotency-Key": "wait-once"}
    body = {"role": "external", "content": "answer me once"}
    first = await client.post(f"/api/messages/{cid}", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["reply"]["text"]
    counts = await row_counts(clean_backend)
    retry = await client.post(f"/api/messages/{cid}", json=body, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    assert (await row_counts(clean_backend))["messages"] == counts["messages"]
