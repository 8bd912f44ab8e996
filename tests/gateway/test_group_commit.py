"""External messages written in batches: chained in arrival order per conversation, each
with its audit row, and never into a conversation that changed hands since it was read."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import select

from relaychat.services import Services
from relaychat.storage.models import AuditEvent
from tests.support.chat import messages_of
from tests.support.factories import TestUser, make_conversation, make_user
from tests.support.settings import VERBATIM_KEY

SYSTEM = {"x-api-key": VERBATIM_KEY}


async def users(client: httpx.AsyncClient, count: int) -> list[TestUser]:
    """Signed-up users; the client keeps none of their cookies, so the key's requests are
    the key's alone (a session cookie would name the owner instead)."""
    made = [await make_user(client) for _ in range(count)]
    client.cookies.clear()
    return made


def external(label: str, **fields: Any) -> dict[str, Any]:
    return {"role": "external", "content": label, "respond": False, **fields}


async def test_concurrent_messages_of_two_conversations_each_form_one_chain(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice, bob = await users(client, 2)
    cids = [(await make_conversation(client, owner))["conversation_id"] for owner in (alice, bob)]
    posts = [(cids[n % 2], f"message {n}") for n in range(40)]
    answers = await asyncio.gather(
        *(
            client.post(f"/api/messages/{cid}", json=external(label), headers=SYSTEM)
            for cid, label in posts
        )
    )
    assert {a.status_code for a in answers} == {201}
    for owner, cid in zip((alice, bob), cids, strict=True):
        messages = await messages_of(client, owner, cid)
        assert len(messages) == 20
        # One chain in creation order: each message answers the one before it.
        parents = [m["parent_message_id"] for m in messages]
        assert parents == [None] + [m["message_id"] for m in messages[:-1]]
        convo = (await client.get(f"/api/convos/{cid}", headers=owner.headers)).json()
        assert convo["unseen_external"] == 20
    # Every acknowledged message has its audit row, committed with it.
    acknowledged = {a.json()["message"]["message_id"] for a in answers}
    async with services.sessionmaker() as session:
        audited = Counter(
            await session.scalars(
                select(AuditEvent.message_id).where(AuditEvent.outcome == "accepted")
            )
        )
    assert set(audited) == acknowledged
    assert set(audited.values()) == {1}


async def test_a_conversation_deleted_since_it_was_read_gets_nothing(
    client: httpx.AsyncClient,
) -> None:
    (alice,) = await users(client, 1)
    cid = (await make_conversation(client, alice))["conversation_id"]
    first = await client.post(f"/api/messages/{cid}", json=external("one"), headers=SYSTEM)
    assert first.status_code == 201, first.text
    deleted = await client.delete(f"/api/convos/{cid}", headers=alice.headers)
    assert deleted.status_code == 204
    again = await client.post(f"/api/messages/{cid}", json=external("two"), headers=SYSTEM)
    # As for any id without a conversation when the system key names no owner.
    assert again.status_code == 404, again.text
    assert again.json()["code"] == "conversation_not_found"


async def test_a_conversation_made_again_by_someone_else_goes_to_its_new_owner(
    client: httpx.AsyncClient,
) -> None:
    alice, bob = await users(client, 2)
    cid = (await make_conversation(client, alice, conversation_id="shared-name"))["conversation_id"]
    first = await client.post(f"/api/messages/{cid}", json=external("for alice"), headers=SYSTEM)
    assert first.status_code == 201, first.text
    assert (await client.delete(f"/api/convos/{cid}", headers=alice.headers)).status_code == 204
    remade = await make_conversation(client, bob, conversation_id="shared-name")
    assert remade["conversation_id"] == cid

    answer = await client.post(f"/api/messages/{cid}", json=external("for bob"), headers=SYSTEM)
    assert answer.status_code == 201, answer.text
    assert [m["text"] for m in await messages_of(client, bob, cid)] == ["for bob"]
    gone = await client.get(f"/api/messages/{cid}", headers=alice.headers)
    assert gone.status_code == 404
