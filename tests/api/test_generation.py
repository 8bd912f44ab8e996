"""Replies: generation from the conversation's endpoint, streamed as events, stored, aborted."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.services import Services
from relaychat.storage.models import Conversation
from tests.support.backends import Backend, row_counts
from tests.support.chat import (
    messages_of,
    wait_generation,
)
from tests.support.factories import TestUser, make_conversation, make_user
from tests.support.sse_client import collect_until


async def test_reply_is_generated_and_stored(client: httpx.AsyncClient, fake_llm: FakeLLM) -> None:
    user = await make_user(client)
    convo = await make_conversation(client, user, endpoint="fake", model="fake-model")
    cid = convo["conversation_id"]
    posted = await client.post(
        f"/api/messages/{cid}", json={"text": "Hello there"}, headers=user.headers
    )
    assert posted.status_code == 202, posted.text
    body = posted.json()
    assert body["message"]["text"] == "Hello there"
    state = await wait_generation(client, user, body["generation_id"])
    assert (state["status"], state["finish_reason"], state["model"]) == (
        "completed",
        "stop",
        "fake-model",
    )
    stored = await messages_of(client, user, cid)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    reply = stored[1]
    assert reply["message_id"] == body["response_message_id"]
    assert reply["parent_message_id"] == body["message"]["message_id"]
    assert reply["status"] == "complete"
    assert reply["text"] == fake_llm.state.config.reply
    assert reply["completion_tokens"] == len(reply["text"].split())
    assert reply["prompt_tokens"] and reply["prompt_tokens"] > 0
    assert (reply["endpoint"], reply["model"]) == ("fake", "fake-model")


async def test_first_exchange_gets_a_title(client: httpx.AsyncClient, fake_llm: FakeLLM) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    posted = (
        await client.post(f"/api/messages/{cid}", json={"text": "Name me"}, headers=user.headers)
    ).json()
    await wait_generation(client, user, posted["generation_id"])
    for _ in range(200):
        title = (await client.get(f"/api/convos/{cid}", headers=user.headers)).json()["title"]
        if title:
            break
        await asyncio.sleep(0.05)
    assert title == fake_llm.state.config.reply.strip()[:80]
    title_calls = [r for r in fake_llm.requests if (r.body or {}).get("model") == "fake-model-mini"]
    assert title_calls, "the title should come from the endpoint's title_model"


async def test_context_is_the_branch_with_system_prompt_and_parameters(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    user = await make_user(client)
    cid = (
        await make_conversation(
            client,
            user,
            endpoint="fake",
            system_prompt="You are terse.",
            model_parameters={"temperature": 0.3, "max_tokens": 50},
        )
    )["conversation_id"]
    first = (
        await client.post(
            f"/api/messages/{cid}", json={"text": "root question"}, headers=user.headers
        )
    ).json()
    await wait_generation(client, user, first["generation_id"])
    other = (
        await client.post(f"/api/messages/{cid}", json={"text": "branch A"}, headers=user.headers)
    ).json()
    await wait_generation(client, user, other["generation_id"])
    marker = "branch B unique-7f3a"
    second = (
        await client.post(
            f"/api/messages/{cid}",
            json={"text": marker, "parent_message_id": first["response_message_id"]},
            headers=user.headers,
        )
    ).json()
    await wait_generation(client, user, second["generation_id"])
    sent = next(
        r.body for r in fake_llm.requests if marker in str((r.body or {}).get("messages", ""))
    )
    texts = [(m["role"], str(m["content"])) for m in sent["messages"]]
    assert texts[0] == ("system", "You are terse.")
    assert [role for role, _ in texts[1:]] == ["user", "assistant", "user"]
    assert "root question" in texts[1][1] and marker in texts[3][1]
    assert not any("branch A" in content for _, content in texts)
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 50
    assert sent["stream"] is True


async def test_respond_false_and_endpointless_conversations_only_store(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    user = await make_user(client)
    with_endpoint = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    plain = (await make_conversation(client, user))["conversation_id"]
    stored = await client.post(
        f"/api/messages/{with_endpoint}",
        json={"text": "note", "respond": False},
        headers=user.headers,
    )
    assert stored.status_code == 201
    assert stored.json()["generation_id"] is None
    assert (
        await client.post(f"/api/messages/{plain}", json={"text": "note"}, headers=user.headers)
    ).status_code == 201
    before = await row_counts(clean_backend)
    refused = await client.post(
        f"/api/messages/{plain}", json={"text": "answer me", "respond": True}, headers=user.headers
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "no_endpoint")
    assert await row_counts(clean_backend) == before
    assert before["generations"] == 0


async def test_unknown_endpoint_is_refused_before_writing(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    user = await make_user(client)
    refused = await client.post("/api/convos", json={"endpoint": "nope"}, headers=user.headers)
    assert (refused.status_code, refused.json()["field"]) == (422, "endpoint")
    # An endpoint removed from the configuration after the conversation was made.
    cid = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    async with clean_backend.engine.begin() as conn:
        await conn.execute(
            update(Conversation).where(Conversation.id == cid).values(endpoint="nope")
        )
    before = await row_counts(clean_backend)
    response = await client.post(f"/api/messages/{cid}", json={"text": "x"}, headers=user.headers)
    assert (response.status_code, response.json()["code"]) == (404, "endpoint_not_found")
    assert await row_counts(clean_backend) == before


@pytest.mark.parametrize(
    ("fail", "code"),
    [
        ("auth", "provider_auth_failed"),
        ("bad_request", "provider_bad_request"),
        ("cut", "provider_stream_broken"),
        ("garbage", "provider_stream_broken"),
    ],
)
async def test_provider_failures_end_as_clear_errors(
    client: httpx.AsyncClient, fail: str, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="relaychat.domain.answering.runner")
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    text = f'!fake {{"fail": "{fail}"}}\nplease fail'
    posted = (
        await client.post(f"/api/messages/{cid}", json={"text": text}, headers=user.headers)
    ).json()
    state = await wait_generation(client, user, posted["generation_id"])
    assert state["status"] == "failed"
    assert state["error"].startswith(code)
    reply = (await messages_of(client, user, cid))[-1]
    assert (reply["status"], reply["error"].split(":")[0]) == ("error", code)
    # The operator's line: the generation, the endpoint and the code, nothing the upstream said.
    logged = [r.getMessage() for r in caplog.records if r.name.endswith("answering.runner")]
    assert f"generation {posted['generation_id']} on fake failed: {code}" in logged


async def test_anthropic_endpoint_answers_too(client: httpx.AsyncClient, fake_llm: FakeLLM) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="anthropic"))["conversation_id"]
    posted = (
        await client.post(f"/api/messages/{cid}", json={"text": "hi"}, headers=user.headers)
    ).json()
    state = await wait_generation(client, user, posted["generation_id"])
    assert state["status"] == "completed"
    assert (await messages_of(client, user, cid))[-1]["text"] == fake_llm.state.config.reply


async def test_regenerate_makes_a_sibling(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    posted = (
        await client.post(f"/api/messages/{cid}", json={"text": "hi"}, headers=user.headers)
    ).json()
    await wait_generation(client, user, posted["generation_id"])
    again = await client.post(
        f"/api/messages/{cid}/{posted['response_message_id']}/regenerate", headers=user.headers
    )
    assert again.status_code == 202
    await wait_generation(client, user, again.json()["generation_id"])
    replies = [m for m in await messages_of(client, user, cid) if m["role"] == "assistant"]
    assert len(replies) == 2
    assert {r["parent_message_id"] for r in replies} == {posted["message"]["message_id"]}
    missing = await client.post(f"/api/messages/{cid}/nope/regenerate", headers=user.headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "message_not_found")


async def test_events_stream_carries_the_reply(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream("GET", "/api/events", headers=user.headers) as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        posted = (
            await http.post(
                f"/api/messages/{cid}", json={"text": "stream me"}, headers=user.headers
            )
        ).json()
        reply_id = posted["response_message_id"]
        seen = await collect_until(
            stream,
            lambda e: (
                e.event in {"message.completed", "message.failed"}
                and e.data.get("message_id") == reply_id
            ),
        )
    kinds = [e.event for e in seen]
    assert kinds[:3] == ["message.created", "message.created", "generation.started"]
    deltas = "".join(e.data["delta"] for e in seen if e.event == "message.delta")
    completed = seen[-1]
    assert completed.event == "message.completed"
    assert deltas == completed.data["message"]["text"] == fake_llm.state.config.reply
    stored = (await messages_of(client, user, cid))[-1]
    assert stored["text"] == deltas
    ids = [e.id for e in seen]
    assert all(ids) and len(set(ids)) == len(ids)


LONG_REPLY = " ".join(f"word{i}" for i in range(400))


async def start_long_reply(
    client: httpx.AsyncClient, services: Services, user: TestUser, cid: str, *, deltas: int
) -> dict[str, Any]:
    """Post a message whose reply streams for seconds; return once `deltas` have streamed."""
    text = f'!fake {{"token_delay_ms": 20, "reply": "{LONG_REPLY}"}}\nlong answer please'
    async with services.bus.subscribe(user.id) as events:
        response = await client.post(
            f"/api/messages/{cid}", json={"text": text}, headers=user.headers
        )
        posted: dict[str, Any] = response.json()
        seen = 0
        async for envelope in events:
            seen += envelope.type == "message.delta"
            if seen == deltas:
                break
    return posted


async def abort(client: httpx.AsyncClient, user: TestUser, generation_id: str) -> dict[str, Any]:
    """Abort and return the settled state: 200 once the worker confirmed, else 202 and the
    stop still happens (a loaded machine may take longer than the route waits)."""
    response = await client.post(f"/api/generations/{generation_id}/abort", headers=user.headers)
    assert response.status_code in (200, 202), response.text
    if response.status_code == 200:
        state: dict[str, Any] = response.json()
        return state
    return await wait_generation(client, user, generation_id)


async def test_abort_keeps_the_partial_text(client: httpx.AsyncClient, services: Services) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    posted = await start_long_reply(client, services, user, cid, deltas=3)
    assert (await abort(client, user, posted["generation_id"]))["status"] == "aborted"
    stored = (await messages_of(client, user, cid))[-1]
    assert stored["status"] == "unfinished"
    assert stored["text"].startswith("word0 word1 word2")
    assert len(stored["text"]) < len(LONG_REPLY)
    again = await client.post(
        f"/api/generations/{posted['generation_id']}/abort", headers=user.headers
    )
    assert again.json()["status"] == "aborted"


async def test_a_streaming_reply_names_its_generation_for_a_reloaded_client(
    client: httpx.AsyncClient, services: Services
) -> None:
    """A tab that reloads mid-reply learns from the message list which generation to stop."""
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    posted = await start_long_reply(client, services, user, cid, deltas=1)
    listed = await messages_of(client, user, cid)
    person, streaming = listed
    assert person["generation_id"] is None
    assert streaming["status"] == "streaming"
    assert streaming["generation_id"] == posted["generation_id"]
    one = await client.get(f"/api/messages/{cid}/{streaming['message_id']}", headers=user.headers)
    assert one.json()["generation_id"] == posted["generation_id"]
    assert (await abort(client, user, streaming["generation_id"]))["status"] == "aborted"
    assert (await messages_of(client, user, cid))[-1]["status"] == "unfinished"


async def test_generations_of_others_are_not_found(client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(client), await make_user(client)
    cid = (await make_conversation(client, alice, endpoint="fake"))["conversation_id"]
    posted = (
        await client.post(f"/api/messages/{cid}", json={"text": "hi"}, headers=alice.headers)
    ).json()
    for response in (
        await client.get(f"/api/generations/{posted['generation_id']}", headers=bob.headers),
        await client.post(f"/api/generations/{posted['generation_id']}/abort", headers=bob.headers),
        await client.post(
            f"/api/messages/{cid}/{posted['response_message_id']}/regenerate", headers=bob.headers
        ),
    ):
        assert response.status_code == 404
    await wait_generation(client, alice, posted["generation_id"])


async def test_endpoints_are_listed_without_keys(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    response = await client.get("/api/endpoints", headers=user.headers)
    assert response.status_code == 200
    listed = {e["name"]: e for e in response.json()["endpoints"]}
    assert set(listed) == {"anthropic", "fake"}
    assert listed["fake"]["models"] == ["fake-model", "fake-model-mini"]
    assert "fake-key" not in response.text and "127.0.0.1" not in response.text
