"""A key's daily token budget (`max_tokens_per_day`): past it, asking for a reply is 429
`budget_exceeded` with `Retry-After` to the next UTC midnight, and nothing is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.support.backends import Backend, row_counts
from tests.support.chat import wait_generation
from tests.support.factories import TestKey, make_conversation, make_key, make_sessionless_user


async def post(client: httpx.AsyncClient, cid: str, key: TestKey, **body: Any) -> httpx.Response:
    return await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "hello", **body},
        headers=key.headers,
    )


def without_audit(counts: dict[str, int]) -> dict[str, int]:
    # A refused request is audited like every other; that row is the only one it leaves.
    return {table: n for table, n in counts.items() if table != "audit_events"}


async def test_a_spent_budget_refuses_replies_until_midnight_and_stores_nothing(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner, endpoint="fake", title="t"))["conversation_id"]
    key = await make_key(client, owner, max_tokens_per_day=10)
    unlimited = await make_key(client, owner)

    first = await post(client, cid, key, respond=True)
    assert first.status_code == 202, first.text
    await wait_generation(client, owner, first.json()["generation_id"])
    before = await row_counts(clean_backend)
    refused = await post(client, cid, key, respond=True)
    after = await row_counts(clean_backend)

    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "budget_exceeded"
    assert problem["max_tokens_per_day"] == 10
    assert problem["used_today"] >= 10
    resets_at = datetime.fromisoformat(problem["resets_at"])
    assert (resets_at.hour, resets_at.minute, resets_at.second) == (0, 0, 0)
    assert resets_at.utcoffset() == timedelta(0)
    assert datetime.now(UTC) < resets_at <= datetime.now(UTC) + timedelta(days=1)
    retry_after = int(refused.headers["retry-after"])
    assert 0 < retry_after <= 86_400
    assert without_audit(after) == without_audit(before)
    # Storing without a reply costs nothing, so the budget does not stop it; nor does one
    # key's budget touch another key.
    assert (await post(client, cid, key, respond=False)).status_code == 201
    assert (await post(client, cid, unlimited, respond=True)).status_code == 202


async def test_a_raised_budget_applies_at_once(client: httpx.AsyncClient) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner, endpoint="fake", title="t"))["conversation_id"]
    key = await make_key(client, owner, max_tokens_per_day=1)
    first = await post(client, cid, key, respond=True)
    await wait_generation(client, owner, first.json()["generation_id"])
    assert (await post(client, cid, key, respond=True)).status_code == 429

    changed = await client.patch(
        f"/api/keys/{key.id}",
        json={"permissions": {"max_tokens_per_day": 1_000_000}},
        headers=owner.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["permissions"]["max_tokens_per_day"] == 1_000_000
    assert (await post(client, cid, key, respond=True)).status_code == 202
    dropped = await client.patch(
        f"/api/keys/{key.id}",
        json={"permissions": {"max_tokens_per_day": None}},
        headers=owner.headers,
    )
    assert dropped.json()["permissions"]["max_tokens_per_day"] is None


async def test_a_budget_must_be_a_positive_whole_number(client: httpx.AsyncClient) -> None:
    owner = await make_sessionless_user(client)
    for bad in (0, -5, 1.5, "lots"):
        response = await client.post(
            "/api/keys",
            json={"name": "k", "permissions": {"max_tokens_per_day": bad}},
            headers=owner.headers,
        )
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["field"] == "permissions.max_tokens_per_day"
