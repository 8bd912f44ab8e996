"""Channel management: the token never comes back, channels are their manager's, rules hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.devtools.fake_twilio import FakeTwilio
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.models import Channel
from tests.support.backends import Backend
from tests.support.factories import TestUser, make_key, make_user
from tests.support.settings import twilio_settings
from tests.support.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
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


async def test_create_never_returns_the_token_and_stores_it_encrypted(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, services: Services
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    assert AUTH_TOKEN not in str(channel)
    assert (channel["auth_token_set"], channel["auth_token_env"]) == (True, None)
    assert channel["webhook_url"] == f"https://testserver/api/channels/twilio/{channel['id']}"
    assert (channel["owner_id"], channel["manager_id"]) == (admin.id, admin.id)
    for response in (
        await client.get(f"/api/channels/{channel['id']}", headers=admin.headers),
        await client.get("/api/channels", headers=admin.headers),
    ):
        assert response.status_code == 200
        assert AUTH_TOKEN not in response.text
    async with services.sessionmaker() as session:
        row = await session.scalar(select(Channel).where(Channel.id == channel["id"]))
    assert row is not None and row.secret_encrypted is not None
    assert AUTH_TOKEN not in row.secret_encrypted
    assert services.secrets.decrypt(row.secret_encrypted) == AUTH_TOKEN


async def test_another_users_channel_is_not_found(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    await make_user(client)  # the admin
    ann = await make_user(client)
    bob = await make_user(client)
    channel = await make_channel(client, ann, fake_twilio, api_base_url=None)
    url = f"/api/channels/{channel['id']}"
    assert (await client.get(url, headers=bob.headers)).json()["code"] == "channel_not_found"
    patched = await client.patch(url, json={"name": "mine"}, headers=bob.headers)
    assert patched.status_code == 404
    assert (await client.delete(url, headers=bob.headers)).status_code == 404
    assert (await client.get("/api/channels", headers=bob.headers)).json() == {"channels": []}
    assert (await client.get(url, headers=ann.headers)).status_code == 200


async def test_admin_sees_every_channel_with_all(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    ann = await make_user(client)
    channel = await make_channel(client, ann, fake_twilio, api_base_url=None)
    listed = await client.get("/api/channels?all=true", headers=admin.headers)
    assert [c["id"] for c in listed.json()["channels"]] == [channel["id"]]
    own = await client.get("/api/channels", headers=admin.headers)
    assert own.json()["channels"] == []


@pytest.mark.parametrize(
    "fields",
    [
        {"owner": "someone-else"},
        {"resolve_by_phone": True},
        {"api_base_url": "http://10.0.0.5:8080"},
        {"auth_token": None, "auth_token_env": "TWILIO_AUTH_TOKEN"},
    ],
    ids=["owner", "resolve_by_phone", "api_base_url", "auth_token_env"],
)
async def test_admin_only_settings(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, fields: dict[str, Any]
) -> None:
    admin = await make_user(client)
    ann = await make_user(client)
    if fields.get("owner") == "someone-else":
        fields = {"owner": admin.email}
    body = {
        "type": "twilio",
        "name": "line",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "public_url": "https://example.com",
        **fields,
    }
    response = await client.post("/api/channels", json=body, headers=ann.headers)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "admin_required"
    if "owner" in fields:  # the same answer for an account that does not exist
        nobody = await client.post(
            "/api/channels", json={**body, "owner": "nobody@example.com"}, headers=ann.headers
        )
        # Each answer names its own request; everything else is the same.
        assert nobody.status_code == 403
        assert {**nobody.json(), "request_id": None} == {**response.json(), "request_id": None}
    assert (await client.get("/api/channels", headers=ann.headers)).json() == {"channels": []}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"account_sid": "AC123"}, "account_sid"),
        ({"public_url": "ftp://example.com"}, "public_url"),
        ({"public_url": "https://user:pw@example.com"}, "public_url"),
        ({"auth_token_env": "TWILIO_TOKEN"}, "body"),  # both token and variable
        ({"auth_token": None, "auth_token_env": "JWT_SECRET"}, "auth_token_env"),
        ({"auth_token": None, "auth_token_env": "DATABASE_URL"}, "auth_token_env"),
        ({"auth_token": None}, "body"),  # neither
        ({"provision_unknown": True}, "body"),  # without resolve_by_phone
        ({"endpoint": "nope"}, "endpoint"),
    ],
)
async def test_invalid_settings_are_422(
    client: httpx.AsyncClient,
    fake_twilio: FakeTwilio,
    fields: dict[str, Any],
    field: str,
) -> None:
    admin = await make_user(client)
    body = {
        "type": "twilio",
        "name": "line",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "public_url": "https://example.com",
        **fields,
    }
    response = await client.post("/api/channels", json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert field in str(problem)
    assert (await client.get("/api/channels", headers=admin.headers)).json() == {"channels": []}


async def test_public_url_with_the_webhook_path_is_used_verbatim(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio, public_url="https://x.invalid")
    verbatim = f"https://testserver/api/channels/twilio/{channel['id']}?tenant=ann"
    patched = await client.patch(
        f"/api/channels/{channel['id']}", json={"public_url": verbatim}, headers=admin.headers
    )
    assert patched.json()["webhook_url"] == verbatim
    response = await post_signed(client, verbatim, fixture_form("inbound__sms"))
    assert response.status_code == 200, response.text


async def test_patch_rotates_the_token_and_disables(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    url = f"/api/channels/{channel['id']}"
    new_token = "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a49"
    patched = await client.patch(url, json={"auth_token": new_token}, headers=admin.headers)
    assert patched.status_code == 200, patched.text
    assert new_token not in patched.text
    form = fixture_form("inbound__sms")
    old = await post_signed(client, channel["webhook_url"], form)
    assert old.status_code == 403
    assert (await post_signed(client, channel["webhook_url"], form, token=new_token)).is_success
    disabled = await client.patch(url, json={"enabled": False}, headers=admin.headers)
    assert disabled.json()["enabled"] is False
    refused = await client.patch(url, json={"name": None}, headers=admin.headers)
    assert refused.status_code == 422


async def test_delete(client: httpx.AsyncClient, fake_twilio: FakeTwilio) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    url = f"/api/channels/{channel['id']}"
    assert (await client.delete(url, headers=admin.headers)).status_code == 204
    assert (await client.get(url, headers=admin.headers)).status_code == 404
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 404


async def test_only_an_admin_points_a_channel_at_an_environment_variable(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    ann = await make_user(client)
    channel = await make_channel(client, ann, fake_twilio, api_base_url=None)
    url = f"/api/channels/{channel['id']}"
    body = {"auth_token_env": "TWILIO_AUTH_TOKEN"}
    refused = await client.patch(url, json=body, headers=ann.headers)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "admin_required"
    assert (await client.get(url, headers=ann.headers)).json()["auth_token_set"] is True
    allowed = await client.patch(url, json=body, headers=admin.headers)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["auth_token_env"] == "TWILIO_AUTH_TOKEN"
    wrong = await client.patch(url, json={"auth_token_env": "JWT_SECRET"}, headers=admin.headers)
    assert wrong.status_code == 422


# -- the channel's messages ---------------------------------------------------------------


async def channel_messages(
    client: httpx.AsyncClient, user: TestUser, channel: dict[str, Any], **params: Any
) -> dict[str, Any]:
    response = await client.get(
        f"/api/channels/{channel['id']}/messages", params=params, headers=user.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_channel_messages_show_what_came_in_and_how_the_reply_went(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, fake_llm: FakeLLM
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    inbound = fixture_form("inbound__sms")
    assert (await post_signed(client, channel["webhook_url"], inbound)).status_code == 200
    (sent,) = await sent_messages(fake_twilio)
    await reply_delivery(client, admin, thread(channel), "queued")

    listed = await channel_messages(client, admin, channel)

    assert listed["next_cursor"] is None
    reply, question = listed["messages"]
    assert question == {
        "message_id": question["message_id"],
        "conversation_id": thread(channel),
        "direction": "inbound",
        "created_at": question["created_at"],
        "source": "sms",
        "from_number": SENDER,
        "to_number": OUR_NUMBER,
        "text": "Hi, is my order ready?",
        "text_truncated": False,
        "twilio_sid": dict(inbound)["MessageSid"],
        "delivery": None,
    }
    assert (reply["direction"], reply["conversation_id"]) == ("outbound", thread(channel))
    assert (reply["from_number"], reply["to_number"]) == (OUR_NUMBER, SENDER)
    assert reply["text"] == fake_llm.state.config.reply[:200]
    assert reply["created_at"] > question["created_at"]
    delivery = reply["delivery"]
    assert (delivery["state"], delivery["error_code"]) == ("queued", None)
    assert [(p["index"], p["sid"], p["status"]) for p in delivery["parts"]] == [
        (0, sent.sid, "queued")
    ]

    # Twilio's status callback moves it on, with the carrier's error code.
    assert sent.status_callback is not None
    form = fixture_form("status__undelivered", MessageSid=sent.sid, SmsSid=sent.sid)
    assert (await post_signed(client, sent.status_callback, form)).status_code == 204

    [reply, _] = (await channel_messages(client, admin, channel))["messages"]
    delivery = reply["delivery"]
    assert (delivery["state"], delivery["error_code"]) == ("undelivered", "30003")
    assert delivery["parts"][0]["status"] == "undelivered"
    assert delivery["updated_at"] is not None
    # The URL to paste into Twilio, absolute, on the channel as it is read back.
    got = (await client.get(f"/api/channels/{channel['id']}", headers=admin.headers)).json()
    assert got["webhook_url"] == f"https://testserver/api/channels/twilio/{channel['id']}"


async def test_a_reply_twilio_refused_shows_its_error_code(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    fake_twilio.fail_next(1, status=400, code=21211)
    assert (await post_signed(client, channel["webhook_url"], inbound_from(SENDER))).is_success
    await reply_delivery(client, admin, thread(channel), "failed")

    [reply, _] = (await channel_messages(client, admin, channel))["messages"]

    delivery = reply["delivery"]
    assert (delivery["state"], delivery["error_code"]) == ("failed", "21211")
    assert delivery["error_message"]
    assert delivery["parts"] == []


def inbound_from(phone: str, n: int = 1, body: str = "Hi") -> list[tuple[str, str]]:
    """An inbound SMS from `phone`; `n` makes its MessageSid."""
    sid = f"SM{n:032x}"
    return fixture_form(
        "inbound__sms", From=phone, Body=body, MessageSid=sid, SmsSid=sid, SmsMessageSid=sid
    )


async def test_channel_messages_come_a_page_at_a_time_and_only_the_channels(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    # No endpoint: nothing is answered, so only what came in is listed.
    channel = await make_channel(client, admin, fake_twilio, endpoint=None)
    other = await make_channel(client, admin, fake_twilio, endpoint=None, name="Other line")
    long_text = "word " * 100
    for n, body in enumerate(("first", "second", long_text), start=1):
        response = await post_signed(client, channel["webhook_url"], inbound_from(SENDER, n, body))
        assert response.status_code == 200, response.text
    assert (await post_signed(client, other["webhook_url"], inbound_from(SENDER, 9))).is_success
    # Posted into the channel's thread with a system key, and by its owner: not the channel's.
    key = await make_key(client, admin, system=True)
    by_key = await client.post(
        f"/api/messages/{thread(channel)}",
        json={"role": "external", "content": "from a key", "respond": False},
        headers={"x-api-key": key.secret},
    )
    assert by_key.status_code == 201, by_key.text
    by_owner = await client.post(
        f"/api/messages/{thread(channel)}", json={"text": "a note"}, headers=admin.headers
    )
    assert by_owner.status_code == 201, by_owner.text

    first = await channel_messages(client, admin, channel, limit=2)
    second = await channel_messages(client, admin, channel, limit=2, cursor=first["next_cursor"])

    assert [m["text"] for m in first["messages"]] == [long_text.strip()[:200], "second"]
    assert first["messages"][0]["text_truncated"] is True
    assert [m["text"] for m in second["messages"]] == ["first"]
    assert second["next_cursor"] is None
    assert [m["text"] for m in (await channel_messages(client, admin, other))["messages"]] == ["Hi"]
    bad = await client.get(
        f"/api/channels/{channel['id']}/messages?cursor=bm90LWEtY3Vyc29y", headers=admin.headers
    )
    assert (bad.status_code, bad.json()["field"]) == (422, "cursor")


async def test_channel_messages_are_their_managers_and_of_their_conversations(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    bob, carol = await make_user(client), await make_user(client)
    channel = await make_channel(client, bob, fake_twilio, endpoint=None, api_base_url=None)
    url = f"/api/channels/{channel['id']}/messages"
    assert (await post_signed(client, channel["webhook_url"], inbound_from(SENDER, 1))).is_success
    # An admin points bob's channel at carol: what comes in now is carol's.
    repointed = await client.patch(
        f"/api/channels/{channel['id']}", json={"owner": carol.email}, headers=admin.headers
    )
    assert repointed.status_code == 200, repointed.text
    newcomer = "+14155552672"
    assert (await post_signed(client, channel["webhook_url"], inbound_from(newcomer, 2))).is_success

    by_bob = await channel_messages(client, bob, channel)
    by_admin = await channel_messages(client, admin, channel)
    by_carol = await client.get(url, headers=carol.headers)

    assert [m["from_number"] for m in by_bob["messages"]] == [SENDER]
    assert [m["from_number"] for m in by_admin["messages"]] == [newcomer, SENDER]
    # Not carol's channel: the same 404 as a channel that does not exist.
    nowhere = await client.get(
        "/api/channels/00000000-0000-0000-0000-000000000000/messages", headers=carol.headers
    )
    for refused in (by_carol, nowhere):
        assert (refused.status_code, refused.json()["code"]) == (404, "channel_not_found")
    assert by_carol.json()["detail"] == nowhere.json()["detail"]
