"""Conversations: create with chosen ids, list with cursors, change, delete, owner scoping."""

from __future__ import annotations

import httpx
import pytest

from relaychat.services import Services
from tests.support.backends import Backend, row_counts
from tests.support.factories import make_conversation, make_key, make_user, post_message


async def test_create_with_generated_and_chosen_ids(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    generated = await make_conversation(client, user)
    assert len(generated["conversation_id"]) == 36
    # An id naming a phone number is a by-sender thread: its owner must have that number.
    await client.patch("/api/user", json={"phone_number": "+14155552671"}, headers=user.headers)
    chosen = await make_conversation(
        client,
        user,
        conversation_id="sms-+14155552671",
        title="SMS",
        endpoint="fake",
        model="fake-model-mini",
        model_parameters={"temperature": 0.2},
        system_prompt="Be brief.",
    )
    assert chosen["conversation_id"] == "sms-+14155552671"
    fetched = await client.get("/api/convos/sms-+14155552671", headers=user.headers)
    assert fetched.status_code == 200
    assert fetched.json() == chosen
    assert chosen["model_parameters"] == {"temperature": 0.2}
    assert chosen["archived"] is False


async def test_taken_id_is_a_conflict_and_writes_nothing(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    alice, bob = await make_user(client), await make_user(client)
    await make_conversation(client, alice, conversation_id="shared-id")
    before = await row_counts(clean_backend)
    response = await client.post(
        "/api/convos", json={"conversation_id": "shared-id"}, headers=bob.headers
    )
    assert (response.status_code, response.json()["code"]) == (409, "conversation_exists")
    assert await row_counts(clean_backend) == before


@pytest.mark.parametrize("bad_id", ["", "has space", "-leading-dash", "x" * 129, "a/b"])
async def test_bad_conversation_ids_are_refused(client: httpx.AsyncClient, bad_id: str) -> None:
    user = await make_user(client)
    response = await client.post(
        "/api/convos", json={"conversation_id": bad_id}, headers=user.headers
    )
    assert response.status_code == 422
    assert response.json()["field"] == "conversation_id"


async def test_list_is_newest_first_and_paginates(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    ids = [
        (await make_conversation(client, user, title=f"c{i}"))["conversation_id"] for i in range(5)
    ]
    # Activity moves a conversation to the top.
    await post_message(client, user, ids[1], text="bump")
    expected = [ids[1], ids[4], ids[3], ids[2], ids[0]]

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/convos", params=params, headers=user.headers)).json()
        seen += [c["conversation_id"] for c in page["conversations"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


async def test_archived_conversations_are_listed_apart(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    keep = await make_conversation(client, user)
    old = await make_conversation(client, user)
    patched = await client.patch(
        f"/api/convos/{old['conversation_id']}", json={"archived": True}, headers=user.headers
    )
    assert patched.json()["archived"] is True
    active = (await client.get("/api/convos", headers=user.headers)).json()["conversations"]
    archived = (
        await client.get("/api/convos", params={"archived": "true"}, headers=user.headers)
    ).json()["conversations"]
    assert [c["conversation_id"] for c in active] == [keep["conversation_id"]]
    assert [c["conversation_id"] for c in archived] == [old["conversation_id"]]


async def test_patch_changes_only_given_fields(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    convo = await make_conversation(client, user, title="before", model="m1")
    response = await client.patch(
        f"/api/convos/{convo['conversation_id']}",
        json={"title": "after", "system_prompt": None},
        headers=user.headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["title"], body["model"], body["system_prompt"]) == ("after", "m1", None)
    assert body["updated_at"] > convo["updated_at"]


async def test_delete_removes_messages_too(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    user = await make_user(client)
    convo = await make_conversation(client, user)
    await post_message(client, user, convo["conversation_id"], text="hi")
    response = await client.delete(f"/api/convos/{convo['conversation_id']}", headers=user.headers)
    assert response.status_code == 204
    counts = await row_counts(clean_backend)
    assert (counts["conversations"], counts["messages"]) == (0, 0)
    gone = await client.get(f"/api/convos/{convo['conversation_id']}", headers=user.headers)
    assert (gone.status_code, gone.json()["code"]) == (404, "conversation_not_found")


async def test_bad_cursor_is_a_clear_error(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    response = await client.get("/api/convos", params={"cursor": "!!!"}, headers=user.headers)
    assert (response.status_code, response.json()["field"]) == (422, "cursor")


async def test_another_users_conversation_is_not_found_for_every_verb(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    alice, bob = await make_user(client), await make_user(client)
    convo = await make_conversation(client, alice, title="private")
    await post_message(client, alice, convo["conversation_id"], text="secret")
    path = convo["conversation_id"]
    before = await row_counts(clean_backend)
    attempts = [
        await client.get(f"/api/convos/{path}", headers=bob.headers),
        await client.patch(f"/api/convos/{path}", json={"title": "x"}, headers=bob.headers),
        await client.delete(f"/api/convos/{path}", headers=bob.headers),
        await client.get(f"/api/messages/{path}", headers=bob.headers),
        await client.post(f"/api/messages/{path}", json={"text": "hi"}, headers=bob.headers),
    ]
    missing = await client.get("/api/convos/does-not-exist", headers=bob.headers)
    for response in attempts:
        assert response.status_code == 404
        assert response.json()["code"] == "conversation_not_found"
        # Indistinguishable from a conversation that does not exist at all.
        assert response.json()["detail"] == missing.json()["detail"]
    assert await row_counts(clean_backend) == before
    assert (await client.get("/api/convos", headers=bob.headers)).json()["conversations"] == []
    still = await client.get(f"/api/convos/{path}", headers=alice.headers)
    assert still.json()["title"] == "private"


async def test_an_agent_endpoint_or_model_that_cannot_answer_is_refused_when_written(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    alice, bob = await make_user(client), await make_user(client)
    private = await client.post(
        "/api/agents", json={"name": "Alice's", "endpoint": "fake"}, headers=alice.headers
    )
    cid = (await make_conversation(client, bob, endpoint="fake"))["conversation_id"]
    before = await row_counts(clean_backend)
    refusals: dict[str, list[tuple[int, str, str]]] = {}
    cases = {
        "agent": [
            {"endpoint": "agents", "agent_id": private.json()["agent_id"]},
            {"endpoint": "agents", "agent_id": "agent_" + "0" * 32},
        ],
        "endpoint": [{"endpoint": "nope"}, {"endpoint": "openAI", "model": "gpt-4o"}],
        "model": [
            {"endpoint": "fake", "model": "gpt-4o"},
            {"endpoint": "anthropic", "model": "fake-model-mini"},
        ],
    }
    for kind, bodies in cases.items():
        for body in bodies:
            for response in (
                await client.post("/api/convos", json=body, headers=bob.headers),
                await client.patch(f"/api/convos/{cid}", json=body, headers=bob.headers),
            ):
                problem = response.json()
                refusals.setdefault(kind, []).append(
                    (response.status_code, problem["code"], problem["field"])
                )
    assert {kind: set(answers) for kind, answers in refusals.items()} == {
        "agent": {(404, "agent_not_found", "agent_id")},
        "endpoint": {(422, "validation_error", "endpoint")},
        "model": {(422, "validation_error", "model")},
    }
    # A model alone is checked against the conversation's endpoint.
    alone = await client.patch(
        f"/api/convos/{cid}", json={"model": "fake-model-huge"}, headers=bob.headers
    )
    assert (alone.status_code, alone.json()["field"]) == (422, "model")
    assert await row_counts(clean_backend) == before
    agent = await client.post(
        "/api/agents", json={"name": "Bob's", "endpoint": "fake"}, headers=bob.headers
    )
    fine = await client.patch(
        f"/api/convos/{cid}",
        json={"endpoint": "agents", "agent_id": agent.json()["agent_id"], "model": "fake-model"},
        headers=bob.headers,
    )
    assert fine.status_code == 200, fine.text


async def test_patching_model_parameters_is_a_merge_patch(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    params = {"model": "fake-model", "temperature": 0.2, "stop": ["x"], "extra": {"a": 1, "b": 2}}
    cid = (await make_conversation(client, user, model_parameters=params))["conversation_id"]
    patched = await client.patch(
        f"/api/convos/{cid}",
        json={"model_parameters": {"temperature": 0.5, "stop": None, "extra": {"b": None}}},
        headers=user.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["model_parameters"] == {
        "model": "fake-model",
        "temperature": 0.5,
        "extra": {"a": 1},
    }


async def test_unseen_external_messages_are_counted_until_read(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The sidebar's badge comes from the server, so it survives a reload and other devices."""
    user = await make_user(client)
    key = await make_key(client, user)
    cid = (await make_conversation(client, user, title="sms"))["conversation_id"]
    other = (await make_conversation(client, user, title="other"))["conversation_id"]
    for i in range(2):
        external = await client.post(
            f"/api/messages/{cid}",
            json={"role": "external", "content": f"ping {i}", "respond": False},
            headers=key.headers,
        )
        assert external.status_code == 201, external.text
    await post_message(client, user, cid, text="my own words are not unseen", respond=False)

    async def listed() -> dict[str, dict[str, object]]:
        page = (await client.get("/api/convos", headers=user.headers)).json()
        return {c["conversation_id"]: c for c in page["conversations"]}

    before = await listed()
    assert before[cid]["unseen_external"] == 2
    assert before[other]["unseen_external"] == 0
    async with services.bus.subscribe(user.id) as events:
        read = await client.post(f"/api/convos/{cid}/read", headers=user.headers)
        assert read.status_code == 200, read.text
        assert read.json()["unseen_external"] == 0
        async for envelope in events:  # every tab clears its badge
            assert envelope.type == "conversation.updated"
            assert b'"unseen_external":0' in envelope.frame
            break
    after = await listed()
    assert after[cid]["unseen_external"] == 0
    # Reading is not activity: the sidebar's order stays.
    assert after[cid]["updated_at"] == before[cid]["updated_at"]
    again = await client.post(f"/api/convos/{cid}/read", headers=user.headers)
    assert again.status_code == 200
