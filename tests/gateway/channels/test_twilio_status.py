"""Twilio's status callbacks on a sent reply: signed, from the sending channel, and never
moving its delivery state back."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from relaychat.devtools.fake_twilio import FakeTwilio
from tests.support.factories import TestUser, make_user
from tests.support.twilio import (
    fixture_form,
    make_channel,
    post_signed,
    reply_delivery,
    sent_messages,
    thread,
)


async def _sent_reply(
    client: httpx.AsyncClient, fake: FakeTwilio
) -> tuple[TestUser, dict[str, Any], str, str]:
    """A channel whose reply went out: (owner, channel, status URL, the part's sid)."""
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake)
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 200
    (sent,) = await sent_messages(fake)
    await reply_delivery(client, admin, thread(channel), "queued")
    assert sent.status_callback is not None
    return admin, channel, sent.status_callback, sent.sid


@pytest.mark.parametrize(("variant", "state"), [("sent", "sent"), ("delivered", "delivered")])
async def test_status_callback_moves_the_delivery_state(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, variant: str, state: str
) -> None:
    admin, channel, url, sid = await _sent_reply(client, fake_twilio)
    form = fixture_form(f"status__{variant}", MessageSid=sid, SmsSid=sid)
    response = await post_signed(client, url, form)
    assert response.status_code == 204, response.text
    delivery = await reply_delivery(client, admin, thread(channel), state)
    assert delivery["parts"][0]["status"] == variant


async def test_late_status_callback_never_moves_back(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin, channel, url, sid = await _sent_reply(client, fake_twilio)
    for variant in ("delivered", "sent"):
        form = fixture_form(f"status__{variant}", MessageSid=sid, SmsSid=sid)
        assert (await post_signed(client, url, form)).status_code == 204
    delivery = await reply_delivery(client, admin, thread(channel), "delivered")
    assert delivery["parts"][0]["status"] == "delivered"


@pytest.mark.parametrize(("variant", "code"), [("undelivered", "30003"), ("failed", "30008")])
async def test_failed_status_callback_records_the_error(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, variant: str, code: str
) -> None:
    admin, channel, url, sid = await _sent_reply(client, fake_twilio)
    form = fixture_form(f"status__{variant}", MessageSid=sid, SmsSid=sid)
    assert (await post_signed(client, url, form)).status_code == 204
    delivery = await reply_delivery(client, admin, thread(channel), "failed")
    assert delivery["parts"][0]["error_code"] == code


async def test_status_callback_needs_a_signature_and_the_sending_channel(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin, channel, url, sid = await _sent_reply(client, fake_twilio)
    form = fixture_form("status__delivered", MessageSid=sid, SmsSid=sid)
    unsigned = await post_signed(client, url, form, signature="bm90IGEgc2lnbmF0dXJl")
    assert unsigned.status_code == 403
    assert unsigned.json()["code"] == "twilio_signature_invalid"
    # Another channel cannot report on this channel's reply.
    other = await make_channel(client, admin, fake_twilio, name="Other line")
    foreign = url.replace(channel["id"], other["id"])
    response = await post_signed(client, foreign, form)
    assert response.status_code == 404
    await reply_delivery(client, admin, thread(channel), "queued")
