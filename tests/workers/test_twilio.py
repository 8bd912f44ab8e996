"""Replies through Twilio: sent to the Messages API in parts, retried, and their delivery state."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.devtools.fake_twilio import FakeTwilio
from relaychat.domain.telephony.channel_replies import split_body
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.models import OutboxAttempt, OutboxItem
from relaychat.workers.twilio import TwilioSender, _twilio_error
from tests.support.backends import Backend
from tests.support.chat import make_agent, messages_of
from tests.support.factories import TestUser, make_user
from tests.support.settings import twilio_settings
from tests.support.twilio import (
    OUR_NUMBER,
    SENDER,
    fixture_form,
    make_channel,
    post_signed,
    reply_delivery,
    sent_messages,
    thread,
)


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    """Replies retried a moment apart, as in every Twilio test."""
    return twilio_settings(backend, tmp_path, fake_llm)


async def _conversation_reply(
    client: httpx.AsyncClient, user: TestUser, cid: str, count: int = 2
) -> dict[str, Any]:
    async def replied() -> dict[str, Any] | None:
        stored = await messages_of(client, user, cid)
        done = [m for m in stored if m["role"] == "assistant" and m["status"] == "complete"]
        return done[0] if len(stored) >= count and done else None

    for _ in range(300):
        reply = await replied()
        if reply is not None:
            return reply
        await asyncio.sleep(0.05)
    raise AssertionError("no reply")


async def _outbox(services: Services) -> list[OutboxItem]:
    async with services.sessionmaker() as session:
        return list(await session.scalars(select(OutboxItem).where(OutboxItem.kind == "twilio")))


async def test_signed_sms_gets_the_agents_reply_through_twilio(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, fake_llm: FakeLLM
) -> None:
    admin = await make_user(client)
    agent = await make_agent(client, admin, instructions="Answer customers briefly.")
    channel = await make_channel(
        client, admin, fake_twilio, endpoint=None, agent_id=agent["agent_id"]
    )
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 200, response.text
    assert response.text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'

    (sent,) = await sent_messages(fake_twilio)
    assert (sent.to, sent.from_, sent.body) == (SENDER, OUR_NUMBER, fake_llm.state.config.reply)
    assert sent.account_sid == channel["account_sid"]
    reply = await _conversation_reply(client, admin, thread(channel))
    assert reply["text"] == sent.body
    assert sent.status_callback == (
        f"https://testserver/api/channels/twilio/{channel['id']}/status/{reply['message_id']}"
    )
    delivery = await reply_delivery(client, admin, thread(channel), "queued")
    assert delivery["parts"] == [{"index": 0, "sid": sent.sid, "status": "queued"}]
    # The agent answered (its instructions went to the model with the text).
    asked = [r.body for r in fake_llm.requests if "order ready" in str(r.body)]
    assert any("Answer customers briefly." in str(body) for body in asked)


async def test_whatsapp_reply_goes_to_whatsapp(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__whatsapp"))
    assert response.status_code == 200, response.text
    (sent,) = await sent_messages(fake_twilio)
    assert (sent.to, sent.from_) == (f"whatsapp:{SENDER}", "whatsapp:+14155238886")


async def _ask_for(client: httpx.AsyncClient, channel: dict[str, Any], reply: str) -> None:
    directive = f"!fake {json.dumps({'reply': reply})}\nTell me everything."
    form = fixture_form("inbound__sms", Body=directive)
    response = await post_signed(client, channel["webhook_url"], form)
    assert response.status_code == 200, response.text


LONG = " ".join(f"Sentence number {i} of a long answer." for i in range(150))  # ~5.5 k chars


async def test_long_reply_is_sent_in_parts_in_order(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    await _ask_for(client, channel, LONG)
    expected = split_body(LONG)
    assert len(expected) == 4
    sent = await sent_messages(fake_twilio, len(expected))
    assert [m.body for m in sent] == expected
    assert all(len(m.body) <= 1600 for m in sent)
    delivery = await reply_delivery(client, admin, thread(channel), "queued")
    assert [p["index"] for p in delivery["parts"]] == [0, 1, 2, 3]
    assert delivery["part_count"] == 4


async def test_twilio_500_then_success_resumes_without_resending(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, services: Services
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    fake_twilio.fail_next(1, status=500, after=1)  # the second part fails once
    await _ask_for(client, channel, LONG)
    expected = split_body(LONG)
    sent = await sent_messages(fake_twilio, len(expected))
    await reply_delivery(client, admin, thread(channel), "queued")
    assert [m.body for m in sent] == expected  # each part once, in order
    assert fake_twilio.state.requests == len(expected) + 1
    (item,) = await _outbox(services)
    assert (item.status, item.attempts) == ("delivered", 2)


async def test_attempt_cut_short_after_a_part_resumes_with_the_next_part(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, services: Services
) -> None:
    # Twilio accepts part 1, then hangs on part 2 past the attempt's deadline: the worker
    # abandons the attempt, so only what the sender saved on the way survives it.
    services.outbox.attempt_seconds = 1.0
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    fake_twilio.fail_next(1, status=503, hang=3.0, after=1)
    await _ask_for(client, channel, LONG)
    expected = split_body(LONG)
    sent = await sent_messages(fake_twilio, len(expected))
    await reply_delivery(client, admin, thread(channel), "queued")
    assert [m.body for m in sent] == expected  # part 1 once, then 2, 3, 4
    (item,) = await _outbox(services)
    assert item.status == "delivered"
    async with services.sessionmaker() as session:
        errors = (
            await session.scalars(
                select(OutboxAttempt.error)
                .where(OutboxAttempt.item_id == item.id)
                .order_by(OutboxAttempt.attempted_at)
            )
        ).all()
    assert errors[0] is not None and errors[0].startswith("no outcome within")
    await asyncio.sleep(0.1)
    assert len(fake_twilio.messages) == len(expected)


async def test_sender_saves_each_accepted_part_and_stops_when_the_claim_is_lost(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, services: Services
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    payload = {
        "channel_id": channel["id"],
        "message_id": "5f0c7a9e-2b1d-4c3e-8f6a-0123456789ab",
        "to": SENDER,
        "from": OUR_NUMBER,
        "parts": ["one", "two", "three"],
        "sent": [],
    }
    item = OutboxItem(id="twilio-test", kind="twilio", target_id=channel["id"])
    item.payload = json.dumps(payload)
    saved: list[dict[str, Any]] = []

    async def checkpoint(text: str) -> bool:
        saved.append(json.loads(text))
        return len(saved) < 2  # the claim is lost after part 2 was saved

    sender = TwilioSender(services.sessionmaker, services.secrets)
    try:
        attempt = await sender.send(item, checkpoint)
    finally:
        await sender.aclose()
    assert [m.body for m in fake_twilio.messages] == ["one", "two"]
    assert [[p["index"] for p in s["sent"]] for s in saved] == [[0], [0, 1]]
    assert [p["sid"] for p in saved[1]["sent"]] == [m.sid for m in fake_twilio.messages]
    assert not attempt.delivered


async def test_a_request_has_one_deadline_for_the_whole_exchange(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, services: Services
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    payload = {
        "channel_id": channel["id"],
        "message_id": "5f0c7a9e-2b1d-4c3e-8f6a-0123456789ab",
        "to": SENDER,
        "from": OUR_NUMBER,
        "parts": ["one", "two"],
        "sent": [],
    }
    item = OutboxItem(id="twilio-test", kind="twilio", target_id=channel["id"])
    item.payload = json.dumps(payload)
    fake_twilio.fail_next(1, status=503, hang=3.0, after=1)

    async def checkpoint(text: str) -> bool:
        return True

    sender = TwilioSender(services.sessionmaker, services.secrets, timeout=0.5)
    try:
        attempt = await sender.send(item, checkpoint)
    finally:
        await sender.aclose()
    assert (attempt.delivered, attempt.error, attempt.give_up) == (
        False,
        "no answer within 0.5 s",
        False,
    )
    assert attempt.payload is not None
    assert [p["index"] for p in json.loads(attempt.payload)["sent"]] == [0]


def test_error_without_a_twilio_body_reports_the_http_status() -> None:
    html = b"<html><body>502 Bad Gateway</body></html>"
    assert _twilio_error(httpx.Response(502, content=html), html) == {
        "code": None,
        "message": "HTTP 502 Bad Gateway",
        "status": 502,
    }
    twilio = b'{"code": 21211, "message": "The \'To\' number is not valid.", "status": 400}'
    assert _twilio_error(httpx.Response(400, content=twilio), twilio) == {
        "code": 21211,
        "message": "The 'To' number is not valid.",
        "status": 400,
    }


async def test_rate_limited_send_waits_for_retry_after(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, services: Services
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    fake_twilio.fail_next(1, status=429, retry_after=1)
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 200
    # The message reaches Twilio before the worker records the attempt that sent it: wait for
    # the delivery state, written in the same transaction as the row's outcome.
    await reply_delivery(client, admin, thread(channel), "queued")
    (sent,) = fake_twilio.messages
    assert sent.to == SENDER
    (row,) = await _outbox(services)
    assert (row.status, row.attempts) == ("delivered", 2)
    async with services.sessionmaker() as session:
        first, second = (
            await session.scalars(
                select(OutboxAttempt)
                .where(OutboxAttempt.item_id == row.id)
                .order_by(OutboxAttempt.attempted_at)
            )
        ).all()
    assert (first.status_code, second.status_code) == (429, 201)
    assert (second.attempted_at - first.attempted_at).total_seconds() >= 1.0  # Retry-After: 1


async def test_invalid_to_gives_up_and_marks_the_reply_failed(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, services: Services
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    fake_twilio.fail_next(1, status=400, code=21211)
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 200
    delivery = await reply_delivery(client, admin, thread(channel), "failed")
    assert delivery["error"]["code"] == 21211
    assert delivery["error"]["status"] == 400
    (item,) = await _outbox(services)
    assert (item.status, item.attempts, item.last_status_code) == ("failed", 1, 400)
    assert item.last_error is not None and item.last_error.startswith("21211")
    assert fake_twilio.messages == []


async def test_no_reply_is_sent_for_a_channel_without_endpoint(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, services: Services
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio, endpoint=None)
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 200
    assert [m["role"] for m in await messages_of(client, admin, thread(channel))] == ["external"]
    assert await _outbox(services) == []
