"""The group-commit writer: one batch over several conversations, each chained after its
own latest message, and what went stale refused without touching the rest."""

from __future__ import annotations

import asyncio

import httpx

from relaychat.domain.intake.group_commit import GroupCommitWriter, Pending, Stale, Written
from relaychat.services import Services
from relaychat.statuses import MessageRole
from tests.support.chat import messages_of
from tests.support.factories import TestUser, make_conversation, make_user


def pending(conversation_id: str, owner: TestUser, text: str) -> Pending:
    return Pending(
        conversation_id=conversation_id,
        owner_id=owner.id,
        role=MessageRole.EXTERNAL,
        sender="sms",
        content=[{"type": "text", "text": text}],
        text=text,
        metadata={},
        api_key_id=None,
        unseen=True,
    )


async def test_one_batch_chains_each_conversation_and_refuses_only_the_stale(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice, bob = await make_user(client), await make_user(client)
    busy, empty, gone = [
        (await make_conversation(client, alice))["conversation_id"] for _ in range(3)
    ]
    bobs, shared = [(await make_conversation(client, bob))["conversation_id"] for _ in range(2)]
    first = await client.post(
        f"/api/messages/{busy}", json={"text": "before", "respond": False}, headers=alice.headers
    )
    tip = first.json()["message"]["message_id"]
    assert (await client.delete(f"/api/convos/{gone}", headers=alice.headers)).status_code == 204

    batch = [
        pending(busy, alice, "one"),
        pending(empty, alice, "two"),
        pending(bobs, alice, "not alice's"),  # the owner the caller saw is not the owner
        pending(busy, alice, "three"),
        pending(gone, alice, "deleted meanwhile"),
        pending(shared, bob, "bob's"),
        pending(shared, alice, "the callers disagree"),
        pending(empty, alice, "four"),
    ]
    writer = GroupCommitWriter(services.engine, services.bus, routes=services.routes)
    writer.start()
    try:
        # Queued in one turn, before the writer wakes: one batch.
        results = await asyncio.gather(*(writer.write(p) for p in batch), return_exceptions=True)
    finally:
        await writer.close()

    outcome = dict(zip([p.text for p in batch], results, strict=True))
    refused = {"not alice's", "deleted meanwhile", "bob's", "the callers disagree"}
    assert {text for text, result in outcome.items() if isinstance(result, Stale)} == refused
    written = {t: r.message for t, r in outcome.items() if isinstance(r, Written)}
    assert set(written) == {"one", "two", "three", "four"}

    in_busy = await messages_of(client, alice, busy)
    assert [m["text"] for m in in_busy] == ["before", "one", "three"]
    assert [m["parent_message_id"] for m in in_busy[1:]] == [tip, in_busy[1]["message_id"]]
    in_empty = await messages_of(client, alice, empty)
    assert [m["text"] for m in in_empty] == ["two", "four"]
    assert [m["parent_message_id"] for m in in_empty] == [None, in_empty[0]["message_id"]]
    assert [m["message_id"] for m in in_busy[1:] + in_empty] == [
        written[t].message_id for t in ("one", "three", "two", "four")
    ]
    assert await messages_of(client, bob, bobs) == []
    assert await messages_of(client, bob, shared) == []

    convos = {
        cid: (await client.get(f"/api/convos/{cid}", headers=alice.headers)).json()
        for cid in (busy, empty)
    }
    assert [convos[cid]["unseen_external"] for cid in (busy, empty)] == [2, 2]
