"""End to end: an external message and its reply reach a receiver as signed callbacks."""

from __future__ import annotations

import asyncio

import httpx

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.services import Services
from tests.support.backends import Backend, row_counts
from tests.support.factories import TestUser, make_conversation, make_key, make_user
from tests.support.settings import VERBATIM_KEY
from tests.support.webhooks import Receiver, delivery_state, register

SYSTEM = {"x-api-key": VERBATIM_KEY}


async def test_external_message_reply_is_called_back_signed(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, fake_llm: FakeLLM
) -> None:
    owner = await make_user(client)
    hook = await register(client, owner, receiver)
    cid = (await make_conversation(client, owner, endpoint="fake"))["conversation_id"]
    await receiver.wait_for(1)  # conversation.created
    receiver.deliveries.clear()

    posted = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "ping from the SMS gateway", "respond": True},
        headers=SYSTEM,
    )
    assert posted.status_code == 202, posted.text
    sent = posted.json()
    await receiver.wait_for(2)

    assert all(d.verified for d in receiver.deliveries), "standardwebhooks refused a signature"
    by_type = {d.payload["type"]: d for d in receiver.deliveries}
    assert set(by_type) == {"message.created", "message.completed"}
    created = by_type["message.created"].payload
    assert created["data"]["message"]["message_id"] == sent["message"]["message_id"]
    assert created["data"]["message"]["role"] == "external"
    completed = by_type["message.completed"].payload
    assert completed["data"]["message"]["message_id"] == sent["response_message_id"]
    assert completed["data"]["message"]["text"] == fake_llm.state.config.reply
    assert completed["data"]["in_reply_to"] == sent["message"]["message_id"]
    assert completed["data"]["generation_id"] == sent["generation_id"]
    assert completed["timestamp"].endswith("Z")
    assert len({d.webhook_id for d in receiver.deliveries}) == 2
    assert all(d.webhook_id.startswith("msg_") for d in receiver.deliveries)
    delivery = by_type["message.completed"]
    assert delivery.headers["webhook-signature"].startswith("v1,")
    assert delivery.headers["content-type"] == "application/json"

    entry = await delivery_state(
        client,
        owner.headers,
        hook["id"],
        delivery.webhook_id,
        until=lambda e: e["status"] != "pending",
    )
    assert entry["status"] == "delivered" and entry["attempts"] == 1
    assert entry["last_status_code"] == 200 and entry["payload"] == delivery.body


async def reply_to_external(
    client: httpx.AsyncClient, owner: TestUser, receiver: Receiver, content: str
) -> httpx.Response:
    """An external message answered in a conversation whose end `receiver` hears about."""
    await register(client, owner, receiver, events=["message.failed", "message.completed"])
    cid = (await make_conversation(client, owner, endpoint="fake"))["conversation_id"]
    posted = await client.post(
        f"/api/messages/{cid}", json={"role": "external", "content": content}, headers=SYSTEM
    )
    assert posted.status_code == 202
    return posted


async def test_failed_reply_is_message_failed(
    client: httpx.AsyncClient, services: Services, receiver: Receiver
) -> None:
    owner = await make_user(client)
    await reply_to_external(client, owner, receiver, '!fake {"fail": "bad_request"}\nhi')
    await receiver.wait_for(1)
    [delivery] = receiver.deliveries
    assert delivery.verified
    payload = delivery.payload
    assert payload["type"] == "message.failed"
    assert payload["data"]["error"].startswith("provider_")
    assert payload["data"]["message"]["status"] == "error"


async def test_key_endpoint_gets_only_its_keys_events(
    client: httpx.AsyncClient, services: Services, receiver: Receiver
) -> None:
    owner = await make_user(client)
    # A sender's thread is opened only for the user with that number.
    phone = await client.patch(
        "/api/user", json={"phone_number": "+14155552671"}, headers=owner.headers
    )
    assert phone.status_code == 200, phone.text
    key = await make_key(client, owner, can_create_conversations=True, respond_default=False)
    other_key = await make_key(client, owner, can_create_conversations=True, respond_default=False)
    await register(client, owner, receiver, api_key_id=key.id)

    for posting_key, text in ((other_key, "not mine"), (key, "mine")):
        response = await client.post(
            "/api/external/messages",
            json={"content": text, "metadata": {"source": "sms", "phoneNumber": "+14155552671"}},
            headers=posting_key.headers,
        )
        assert response.status_code == 201, response.text
    await receiver.wait_for(1)
    await services.outbox.run_once()
    types = [
        (d.payload["type"], d.payload["data"].get("message", {}).get("text"))
        for d in receiver.deliveries
    ]
    # The conversation was opened by the other key, so only the message is ours.
    assert types == [("message.created", "mine")]


async def test_a_refused_message_queues_nothing(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, clean_backend: Backend
) -> None:
    owner = await make_user(client)
    await register(client, owner, receiver)
    key = await make_key(client, owner, allowed_conversations=["sms-*"])
    before = await row_counts(clean_backend)
    refused = await client.post(
        "/api/messages/elsewhere",
        json={"role": "external", "content": "x"},
        headers=key.headers,
    )
    assert refused.status_code == 403
    assert await row_counts(clean_backend) == before
    assert before["outbox"] == 0


async def test_a_persons_message_and_new_conversation_are_reported(
    client: httpx.AsyncClient, services: Services, receiver: Receiver
) -> None:
    owner, other = await make_user(client), await make_user(client)
    await register(client, owner, receiver, events=["conversation.created", "message.created"])
    cid = (await make_conversation(client, owner))["conversation_id"]
    await make_conversation(client, other)  # someone else's: not reported
    response = await client.post(
        f"/api/messages/{cid}", json={"content": "a note to self"}, headers=owner.headers
    )
    assert response.status_code == 201
    await receiver.wait_for(2)
    await services.outbox.run_once()
    assert [d.payload["type"] for d in receiver.deliveries] == [
        "conversation.created",
        "message.created",
    ]
    assert receiver.deliveries[0].payload["data"]["conversation_id"] == cid
    assert receiver.deliveries[1].payload["data"]["message"]["text"] == "a note to self"


async def test_an_aborted_reply_is_message_failed(
    client: httpx.AsyncClient, services: Services, receiver: Receiver
) -> None:
    owner = await make_user(client)
    posted = await reply_to_external(
        client, owner, receiver, '!fake {"token_delay_ms": 200}\nslowly'
    )
    aborted = await client.post(
        f"/api/generations/{posted.json()['generation_id']}/abort", headers=owner.headers
    )
    assert aborted.status_code in (200, 202), aborted.text
    await receiver.wait_for(1)
    [delivery] = receiver.deliveries
    assert delivery.payload["type"] == "message.failed"
    assert delivery.payload["data"]["error"] == "aborted"
    assert delivery.payload["data"]["message"]["status"] == "unfinished"


async def test_a_key_endpoint_hears_the_reply_to_its_keys_message_only(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, fake_llm: FakeLLM
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    await register(client, owner, receiver, api_key_id=key.id, events=["message.completed"])
    cid = (await make_conversation(client, owner, endpoint="fake"))["conversation_id"]
    posted = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "ping", "respond": True},
        headers=key.headers,
    )
    assert posted.status_code == 202, posted.text
    await receiver.wait_for(1)
    # The owner's own message is answered too, but not as the key's business.
    mine = await client.post(f"/api/messages/{cid}", json={"text": "hi"}, headers=owner.headers)
    assert mine.status_code == 202
    await delivery_state(
        client,
        owner.headers,
        (await client.get("/api/webhooks", headers=owner.headers)).json()["webhooks"][0]["id"],
        receiver.deliveries[0].webhook_id,
        until=lambda e: e["status"] == "delivered",
    )
    for _ in range(100):
        listed = (await client.get(f"/api/messages/{cid}", headers=owner.headers)).json()
        if all(m["status"] != "streaming" for m in listed["messages"]):
            break
        await asyncio.sleep(0.05)
    await services.outbox.run_once()
    [delivery] = receiver.deliveries
    assert delivery.payload["type"] == "message.completed"
    assert delivery.payload["data"]["in_reply_to"] == posted.json()["message"]["message_id"]
    assert delivery.payload["data"]["message"]["text"] == fake_llm.state.config.reply
