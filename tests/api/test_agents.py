"""Agents over the API: visibility, validation, and answering with their model."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from relaychat.devtools.fake_llm import FakeLLM
from tests.support.backends import Backend, row_counts
from tests.support.chat import (
    ask,
    make_agent,
    messages_of,
)
from tests.support.factories import make_conversation, make_user


async def test_agent_crud_and_ids(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    agent = await make_agent(
        client, user, instructions="Be kind.", model_parameters={"model": "fake-model-mini"}
    )
    assert agent["agent_id"].startswith("agent_")
    assert agent["visibility"] == "private"
    fetched = await client.get(f"/api/agents/{agent['agent_id']}", headers=user.headers)
    assert fetched.json() == agent
    patched = await client.patch(
        f"/api/agents/{agent['agent_id']}", json={"name": "Renamed"}, headers=user.headers
    )
    assert patched.json()["name"] == "Renamed"
    assert patched.json()["model_parameters"] == {"model": "fake-model-mini"}
    listed = (await client.get("/api/agents", headers=user.headers)).json()["agents"]
    assert [a["agent_id"] for a in listed] == [agent["agent_id"]]
    deleted = await client.delete(f"/api/agents/{agent['agent_id']}", headers=user.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/agents/{agent['agent_id']}", headers=user.headers)
    assert (gone.status_code, gone.json()["code"]) == (404, "agent_not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "endpoint": "nope"}, "endpoint"),
        ({"name": "x", "endpoint": "agents"}, "endpoint"),
        ({"name": "x", "endpoint": "fake", "tools": ["rm_rf"]}, "tools"),
        ({"name": "x", "endpoint": "fake", "mcp_servers": ["ghost"]}, "mcp_servers"),
        ({"name": "x", "endpoint": "fake", "visibility": "everyone"}, "visibility"),
        ({"name": "x", "endpoint": "fake", "model_parameters": "fast"}, "model_parameters"),
        ({"endpoint": "fake"}, "name"),
    ],
)
async def test_bad_agents_are_refused_and_write_nothing(
    client: httpx.AsyncClient, clean_backend: Backend, body: dict[str, Any], field: str
) -> None:
    user = await make_user(client)
    before = await row_counts(clean_backend)
    response = await client.post("/api/agents", json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert await row_counts(clean_backend) == before


async def test_private_agents_are_invisible_and_public_ones_read_only(
    client: httpx.AsyncClient, clean_backend: Backend, fake_llm: FakeLLM
) -> None:
    alice, bob = await make_user(client), await make_user(client)  # alice is the admin
    carol = await make_user(client)
    agent = await make_agent(client, bob, name="Bob's")
    aid = agent["agent_id"]

    # Private: carol can neither see, change, delete nor use it, and cannot tell it exists.
    for response in (
        await client.get(f"/api/agents/{aid}", headers=carol.headers),
        await client.patch(f"/api/agents/{aid}", json={"name": "x"}, headers=carol.headers),
        await client.delete(f"/api/agents/{aid}", headers=carol.headers),
    ):
        assert (response.status_code, response.json()["code"]) == (404, "agent_not_found")
    assert (await client.get("/api/agents", headers=carol.headers)).json()["agents"] == []
    # Refused when the conversation is written, as if it did not exist...
    unusable = await client.post(
        "/api/convos", json={"endpoint": "agents", "agent_id": aid}, headers=carol.headers
    )
    assert (unusable.status_code, unusable.json()["code"]) == (404, "agent_not_found")
    # ...and when it stops being usable afterwards, at the next message.
    await client.patch(f"/api/agents/{aid}", json={"visibility": "public"}, headers=bob.headers)
    cid = (await make_conversation(client, carol, endpoint="agents", agent_id=aid))[
        "conversation_id"
    ]
    await client.patch(f"/api/agents/{aid}", json={"visibility": "private"}, headers=bob.headers)
    before = await row_counts(clean_backend)
    refused = await client.post(f"/api/messages/{cid}", json={"text": "hi"}, headers=carol.headers)
    assert (refused.status_code, refused.json()["code"]) == (404, "agent_not_found")
    assert await row_counts(clean_backend) == before

    # Public: carol may use it, but not change or delete it.
    await client.patch(f"/api/agents/{aid}", json={"visibility": "public"}, headers=bob.headers)
    assert (await client.get(f"/api/agents/{aid}", headers=carol.headers)).status_code == 200
    for response in (
        await client.patch(f"/api/agents/{aid}", json={"name": "x"}, headers=carol.headers),
        await client.delete(f"/api/agents/{aid}", headers=carol.headers),
    ):
        assert (response.status_code, response.json()["code"]) == (403, "agent_read_only")
    await ask(client, carol, cid, "hello agent")
    reply = (await messages_of(client, carol, cid))[-1]
    assert (reply["status"], reply["text"]) == ("complete", fake_llm.state.config.reply)

    # An admin may change anyone's agent.
    admin_edit = await client.patch(
        f"/api/agents/{aid}", json={"description": "checked"}, headers=alice.headers
    )
    assert admin_edit.status_code == 200


async def test_agent_keeps_its_model_when_the_conversation_sends_parameters(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    user = await make_user(client)
    agent = await make_agent(
        client,
        user,
        model="fake-model",
        model_parameters={"model": "fake-model-mini", "temperature": 0.4},
        instructions="You are the agent.",
    )
    cid = (
        await make_conversation(
            client,
            user,
            endpoint="agents",
            agent_id=agent["agent_id"],
            model_parameters={"max_tokens": 64},  # no model: must not erase the agent's
            system_prompt="Conversation prompt.",
        )
    )["conversation_id"]
    marker = "model-kept-42"
    await ask(client, user, cid, marker)
    sent = next(r.body for r in fake_llm.requests if marker in str((r.body or {}).get("messages")))
    assert sent["model"] == "fake-model-mini"
    assert sent["temperature"] == 0.4 and sent["max_tokens"] == 64
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You are the agent.\n\nConversation prompt.",
    }
    reply = (await messages_of(client, user, cid))[-1]
    assert (reply["model"], reply["endpoint"]) == ("fake-model-mini", "fake")


async def test_agents_conversation_without_agent_is_a_clear_error(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="agents"))["conversation_id"]
    response = await client.post(f"/api/messages/{cid}", json={"text": "x"}, headers=user.headers)
    assert (response.status_code, response.json()["code"]) == (422, "agent_required")
    wrong_form = await client.post(
        "/api/convos",
        json={"endpoint": "agents", "agent_id": {"id": "agent_x"}},
        headers=user.headers,
    )
    assert (wrong_form.status_code, wrong_form.json()["field"]) == (422, "agent_id")


async def test_tool_catalog_lists_builtin_and_relaychat_tools(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    response = await client.get("/api/agents/tools", headers=user.headers)
    assert response.status_code == 200
    names = {t["name"]: t["source"] for t in response.json()["tools"]}
    assert names["calculator"] == names["current_time"] == "builtin"
    assert names["remember"] == names["recall"] == names["send_message"] == "relaychat"


async def test_patching_model_parameters_is_a_merge_patch(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    params = {"model": "fake-model-mini", "temperature": 0.2, "top_p": 0.9}
    agent = await make_agent(client, user, model_parameters=params)
    patched = await client.patch(
        f"/api/agents/{agent['agent_id']}",
        json={"model_parameters": {"temperature": 0.7, "top_p": None}},
        headers=user.headers,
    )
    assert patched.status_code == 200, patched.text
    # The agent keeps its model: only what the patch names changes.
    assert patched.json()["model_parameters"] == {"model": "fake-model-mini", "temperature": 0.7}
