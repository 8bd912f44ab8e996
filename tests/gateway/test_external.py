"""External messages: the original request verbatim, answers, threading and agents."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import httpx

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.services import Services
from tests.support.backends import Backend, row_counts
from tests.support.chat import make_agent, messages_of, wait_generation
from tests.support.factories import make_conversation, make_key, make_sessionless_user
from tests.support.settings import VERBATIM_KEY
from tests.support.sse_client import collect_until

VERBATIM_ID = "5c79d482-9b80-45f6-bbf2-9abe17335e55"
VERBATIM_BODY = (
    '{"role": "external", "content": [{"type": "text", "text": '
    '"This is a test external message with structured content"}]}'
)
SYSTEM = {"x-api-key": VERBATIM_KEY}


async def test_the_original_request_verbatim_with_curl(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM
) -> None:
    owner = await make_sessionless_user(client)
    await make_conversation(client, owner, conversation_id=VERBATIM_ID, endpoint="fake")
    port = urlsplit(live_url).port
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream("GET", "/api/events", headers=owner.headers) as stream,
    ):
        curl = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-X", "POST",
            f"http://localhost:{port}/api/messages/{VERBATIM_ID}",
            "-H", "Content-Type: application/json",
            "-H", f"x-api-key: {VERBATIM_KEY}",
            "-d", VERBATIM_BODY,
            "-w", "\n%{http_code}",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await curl.communicate()
        body_text, status = out.decode().rsplit("\n", 1)
        assert status == "202", body_text
        body = json.loads(body_text)
        reply_id = body["response_message_id"]
        seen = await collect_until(
            stream,
            lambda e: e.event == "message.completed" and e.data["message_id"] == reply_id,
        )
    created = seen[0]
    assert created.event == "message.created"
    assert created.data["message"]["role"] == "external"
    assert created.data["message"]["text"] == (
        "This is a test external message with structured content"
    )
    stored = await messages_of(client, owner, VERBATIM_ID)
    assert [m["role"] for m in stored] == ["external", "assistant"]
    assert stored[1]["text"] == fake_llm.state.config.reply == seen[-1].data["message"]["text"]
    # The model was told who spoke.
    sent = next(r.body for r in fake_llm.requests if "structured content" in str(r.body))
    assert "[message from system]" in str(sent["messages"][-1]["content"])


async def test_string_content_metadata_and_respond_false(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner, endpoint="fake"))["conversation_id"]
    response = await client.post(
        f"/api/messages/{cid}",
        json={
            "role": "external",
            "content": "plain text",
            "metadata": {"source": "sms", "phoneNumber": "+14155552671", "x": [1]},
            "respond": False,
        },
        headers=SYSTEM,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["generation_id"] is None
    message = body["message"]
    assert (message["role"], message["text"], message["sender"]) == (
        "external",
        "plain text",
        "sms",
    )
    assert message["metadata"]["x"] == [1]
    assert (await row_counts(clean_backend))["generations"] == 0


async def test_prefer_wait_returns_the_reply(
    client: httpx.AsyncClient, services: Services, fake_llm: FakeLLM
) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner, endpoint="fake"))["conversation_id"]
    response = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "answer me"},
        headers={**SYSTEM, "Prefer": "wait=10"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["preference-applied"] == "wait=10"
    body = response.json()
    assert body["reply"]["text"] == fake_llm.state.config.reply
    assert body["reply"]["message_id"] == body["response_message_id"]
    assert body["generation"]["status"] == "completed"
    # The reply and generation as the runner wrote them are what the database holds.
    stored = await client.get(
        f"/api/messages/{cid}/{body['response_message_id']}", headers=owner.headers
    )
    assert {**stored.json(), "html": None, "generation_id": None} == {
        **body["reply"],
        "html": None,
        "generation_id": None,
    }
    generation = await client.get(
        f"/api/generations/{body['generation_id']}", headers=owner.headers
    )
    assert generation.json() == body["generation"]
    assert not services.runner._awaited  # nothing is kept once taken


async def test_prefer_wait_gives_up_with_202(client: httpx.AsyncClient) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner, endpoint="fake"))["conversation_id"]
    slow = '!fake {"ttft_ms": 3000}\nslow'
    response = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": slow},
        headers={**SYSTEM, "Prefer": "wait=1"},
    )
    assert response.status_code == 202
    await wait_generation(client, owner, response.json()["generation_id"])


async def test_event_stream_answer(live_url: str, client: httpx.AsyncClient) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner, endpoint="fake"))["conversation_id"]
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream(
            "POST",
            f"/api/messages/{cid}",
            json={"role": "external", "content": "stream it"},
            headers={**SYSTEM, "Accept": "text/event-stream"},
        ) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        seen = await collect_until(stream, lambda e: e.event == "message.completed")
    kinds = [e.event for e in seen]
    assert kinds[0] == "message.created" and "message.delta" in kinds
    text = "".join(e.data["delta"] for e in seen if e.event == "message.delta")
    assert text == seen[-1].data["message"]["text"]


async def test_threaded_messages_land_in_one_conversation_per_sender(
    client: httpx.AsyncClient,
) -> None:
    owner = await make_sessionless_user(client)
    await client.patch("/api/user", json={"phone_number": "+1 415 555 2671"}, headers=owner.headers)
    posts = [
        {"source": "sms", "phoneNumber": "+14155552671"},
        {"source": "sms", "phoneNumber": "(415) 555-2671"},
        {"source": "whatsapp", "phoneNumber": "whatsapp:+14155552671"},
    ]
    ids = []
    for metadata in posts:
        response = await client.post(
            "/api/external/messages",
            json={"content": "hi", "metadata": metadata, "respond": False},
            headers=SYSTEM,
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["conversation_id"])
    assert ids == ["sms-+14155552671", "sms-+14155552671", "whatsapp-+14155552671"]
    listed = (await client.get("/api/convos", headers=owner.headers)).json()["conversations"]
    assert sorted(c["conversation_id"] for c in listed) == sorted(set(ids))
    assert len(await messages_of(client, owner, ids[0])) == 2
    missing = await client.post(
        "/api/external/messages", json={"content": "hi", "metadata": {}}, headers=SYSTEM
    )
    assert (missing.status_code, missing.json()["field"]) == (422, "metadata.phoneNumber")


async def test_concurrent_first_messages_of_a_sender_share_the_conversation(
    client: httpx.AsyncClient,
) -> None:
    owner = await make_sessionless_user(client)
    await client.patch("/api/user", json={"phone_number": "+14155552671"}, headers=owner.headers)
    body = {"content": "hi", "metadata": {"source": "sms", "phoneNumber": "+14155552671"}}
    responses = await asyncio.gather(
        *(
            client.post("/api/external/messages", json={**body, "respond": False}, headers=SYSTEM)
            for _ in range(5)
        )
    )
    assert [r.status_code for r in responses] == [201] * 5
    assert len(await messages_of(client, owner, "sms-+14155552671")) == 5


async def test_an_agent_answers_external_messages_with_its_tools_and_model(
    client: httpx.AsyncClient, fake_llm: FakeLLM, services: Services
) -> None:
    owner = await make_sessionless_user(client)
    agent = await make_agent(
        client,
        owner,
        tools=["calculator"],
        model_parameters={"model": "fake-model-mini"},
    )
    cid = (await make_conversation(client, owner, endpoint="agents", agent_id=agent["agent_id"]))[
        "conversation_id"
    ]
    directive = {
        "script": [
            {"tool_calls": [{"name": "calculator", "arguments": {"expression": "2+2"}}]},
            "Four.",
        ]
    }
    marker = "external-agent-9931"
    response = await client.post(
        f"/api/messages/{cid}",
        json={
            "role": "external",
            "content": f"!fake {json.dumps(directive)}\n{marker}",
            "metadata": {"source": "bot", "model_parameters": {"temperature": 0.2}},
        },
        headers={**SYSTEM, "Prefer": "wait=20"},
    )
    assert response.status_code == 200, response.text
    reply = response.json()["reply"]
    assert [p["type"] for p in reply["content"]] == ["tool_call", "tool_result", "text"]
    assert reply["content"][1]["content"] == "4"
    assert reply["model"] == "fake-model-mini"
    sent = [r.body for r in fake_llm.requests if marker in str((r.body or {}).get("messages"))]
    assert {body["model"] for body in sent} == {"fake-model-mini"}


async def test_metadata_can_pick_model_and_agent(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    owner = await make_sessionless_user(client)
    agent = await make_agent(client, owner, model="fake-model-mini")
    cid = (await make_conversation(client, owner, endpoint="fake"))["conversation_id"]
    marker = "pick-agent-4410"
    response = await client.post(
        f"/api/messages/{cid}",
        json={
            "role": "external",
            "content": marker,
            "metadata": {"agent_id": agent["agent_id"]},
        },
        headers={**SYSTEM, "Prefer": "wait=20"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["reply"]["model"] == "fake-model-mini"


async def test_key_usage_is_audited(client: httpx.AsyncClient, services: Services) -> None:
    admin = await make_sessionless_user(client)
    key = await make_key(client, admin, can_create_conversations=True, respond_default=False)
    ok = await client.post(
        "/api/messages/audit-me",
        json={"role": "external", "content": "x"},
        headers=key.headers,
    )
    assert ok.status_code == 201, ok.text
    bad = await client.post(
        "/api/messages/audit-me", json={"role": "external", "content": "x"}, headers={}
    )
    assert bad.status_code == 401
    await services.audit.flush()
    rows = (await client.get(f"/api/keys/{key.id}/audit", headers=admin.headers)).json()
    events: list[dict[str, Any]] = rows["events"]
    assert [(e["outcome"], e["status"]) for e in events] == [("accepted", 201)]
    assert events[0]["strategy"] == "key_owner"
    assert events[0]["conversation_id"] == "audit-me"
    everything = (await client.get("/api/admin/audit", headers=admin.headers)).json()["events"]
    assert {(e["outcome"], e["reason"]) for e in everything} >= {
        ("accepted", None),
        ("refused", "api_key_required"),
    }
    assert key.secret not in json.dumps(everything)


async def test_metrics_count_external_messages(client: httpx.AsyncClient) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner))["conversation_id"]
    await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "x", "respond": False},
        headers=SYSTEM,
    )
    await client.post(f"/api/messages/{cid}", json={"role": "external", "content": "x"})
    text = (await client.get("/metrics")).text
    assert 'relaychat_external_messages_total{key="env:' in text
    assert 'outcome="accepted"' in text and 'outcome="refused"' in text
    assert "relaychat_external_processing_seconds_bucket" in text
    assert 'relaychat_errors_total{code="api_key_required"}' in text
    assert "relaychat_open_event_streams" in text
    assert "relaychat_generation_time_to_first_token_seconds" in text
    assert VERBATIM_KEY not in text
