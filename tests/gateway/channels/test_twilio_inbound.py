"""Twilio inbound webhook: one test per condition, on fixtures signed as Twilio signs them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from relaychat.devtools.fake_twilio import FakeTwilio
from relaychat.services import Services
from relaychat.storage.models import (
    AuditEvent,
    Channel,
    Conversation,
    Generation,
    OutboxItem,
    User,
)
from tests.support.backends import Backend, row_counts
from tests.support.chat import messages_of
from tests.support.factories import TestUser, make_conversation, make_user
from tests.support.log_capture import lines, watch
from tests.support.twilio import (
    AUTH_TOKEN,
    FIXTURES,
    SENDER,
    fixture_form,
    make_channel,
    post_signed,
    sent_messages,
    sign,
    thread,
    wait_for,
)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

# Every event and variant the channel handles has a fixture, and every fixture is declared.
DECLARED = {
    "inbound": {"sms", "whatsapp", "media"},
    "status": {"sent", "delivered", "undelivered", "failed"},
}


def test_every_declared_event_has_a_fixture() -> None:
    found: dict[str, set[str]] = {}
    for path in FIXTURES.glob("*.txt"):
        event, _, variant = path.stem.partition("__")
        found.setdefault(event, set()).add(variant)
    assert found == DECLARED


async def _admin_and_channel(
    client: httpx.AsyncClient, fake: FakeTwilio, **fields: Any
) -> tuple[TestUser, dict[str, Any]]:
    admin = await make_user(client)  # the first user is an admin
    assert admin.role == "admin"
    return admin, await make_channel(client, admin, fake, **fields)


async def test_signed_sms_is_stored_and_answered_with_empty_twiml(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    owner, channel = await _admin_and_channel(client, fake_twilio)
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 200, response.text
    assert response.text == EMPTY_TWIML
    assert response.headers["content-type"].startswith("text/xml")

    stored = await messages_of(client, owner, thread(channel))
    message = stored[0]
    assert (message["role"], message["text"]) == ("external", "Hi, is my order ready?")
    meta = message["metadata"]
    assert (meta["source"], meta["phoneNumber"], meta["channel_id"]) == (
        "sms",
        SENDER,
        channel["id"],
    )
    assert meta["twilio"]["message_sid"] == "SM4f1c2a7d9e8b6c5a4f3e2d1c0b9a8f70"
    assert (meta["twilio"]["from"], meta["twilio"]["to"]) == (SENDER, "+14155550100")


async def test_whatsapp_keeps_its_channel(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    owner, channel = await _admin_and_channel(client, fake_twilio)
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__whatsapp"))
    assert response.status_code == 200, response.text
    (message, *_) = await messages_of(client, owner, thread(channel, "whatsapp"))
    assert message["text"] == "Hello from WhatsApp 👋"
    twilio = message["metadata"]["twilio"]
    assert (twilio["from"], twilio["to"]) == (f"whatsapp:{SENDER}", "whatsapp:+14155238886")
    assert (twilio["profile_name"], twilio["wa_id"]) == ("Ann Lee", "14155552671")
    assert message["metadata"]["source"] == "whatsapp"


async def test_media_urls_are_kept(client: httpx.AsyncClient, fake_twilio: FakeTwilio) -> None:
    owner, channel = await _admin_and_channel(client, fake_twilio)
    form = fixture_form("inbound__media")
    response = await post_signed(client, channel["webhook_url"], form)
    assert response.status_code == 200, response.text
    (message, *_) = await messages_of(client, owner, thread(channel))
    urls = dict(form)
    media = message["metadata"]["twilio"]["media"]
    assert media == [
        {"url": urls["MediaUrl0"], "content_type": "image/jpeg"},
        {"url": urls["MediaUrl1"], "content_type": "application/pdf"},
    ]
    kinds = [part["type"] for part in message["content"]]
    assert kinds == ["text", "image_url", "text"]
    assert message["content"][1]["image_url"]["url"] == urls["MediaUrl0"]
    assert urls["MediaUrl1"] in message["content"][2]["text"]


async def test_bad_signature_is_403_and_stores_nothing(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, services: Services, clean_backend: Backend
) -> None:
    _, channel = await _admin_and_channel(client, fake_twilio)
    form = fixture_form("inbound__sms")
    before = await row_counts(clean_backend)
    wrong = sign(channel["webhook_url"], form, token="0" * 32)
    response = await post_signed(client, channel["webhook_url"], form, signature=wrong)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "twilio_signature_invalid"
    # A field changed after signing is just as bad.
    tampered = [(k, "Send me money" if k == "Body" else v) for k, v in form]
    signed_original = sign(channel["webhook_url"], form)
    response = await post_signed(
        client, channel["webhook_url"], tampered, signature=signed_original
    )
    assert response.status_code == 403
    await services.audit.flush()
    after = await row_counts(clean_backend)
    assert after.pop("audit_events") == before.pop("audit_events") + 2
    assert after == before


async def test_missing_signature_is_403(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, clean_backend: Backend
) -> None:
    _, channel = await _admin_and_channel(client, fake_twilio)
    before = await row_counts(clean_backend)
    response = await client.post(
        channel["webhook_url"],
        content="From=%2B14155552671&Body=hi",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "twilio_signature_invalid"
    assert "missing" in response.json()["detail"]
    after = await row_counts(clean_backend)
    assert {k: v for k, v in after.items() if k != "audit_events"} == {
        k: v for k, v in before.items() if k != "audit_events"
    }


async def test_query_string_is_part_of_the_signed_url(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    _, channel = await _admin_and_channel(client, fake_twilio)
    url = f"{channel['webhook_url']}?tenant=ann&x=a%20b"
    response = await post_signed(client, url, fixture_form("inbound__sms"))
    assert response.status_code == 200, response.text
    # Signed without the query, sent with it: refused.
    form = fixture_form("inbound__sms", MessageSid="SM" + "1" * 32)
    response = await post_signed(client, url, form, signature=sign(channel["webhook_url"], form))
    assert response.status_code == 403


async def test_unknown_channel_is_404(client: httpx.AsyncClient, clean_backend: Backend) -> None:
    before = await row_counts(clean_backend)
    url = "https://testserver/api/channels/twilio/5f0c7a9e-2b1d-4c3e-8f6a-0123456789ab"
    response = await post_signed(client, url, fixture_form("inbound__sms"))
    assert response.status_code == 404
    assert response.json()["code"] == "channel_not_found"
    after = await row_counts(clean_backend)
    assert after["messages"] == before["messages"] == 0


async def test_disabled_channel_refuses_and_stores_nothing(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, clean_backend: Backend
) -> None:
    _, channel = await _admin_and_channel(client, fake_twilio, enabled=False)
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 403
    assert response.json()["code"] == "channel_disabled"
    assert (await row_counts(clean_backend))["messages"] == 0


async def test_the_reply_is_sent_as_the_work_of_the_inbound_request(
    client: httpx.AsyncClient,
    fake_twilio: FakeTwilio,
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The text message's request id (here a trusted proxy's) is on its audit row, on the
    reply's generation and on the reply's outbox row, and the sending is logged under it."""
    _, channel = await _admin_and_channel(client, fake_twilio)
    watch(caplog)
    response = await post_signed(
        client,
        channel["webhook_url"],
        fixture_form("inbound__sms"),
        extra_headers={"x-request-id": "edge-sms.7"},
    )
    assert response.status_code == 200, response.text
    await sent_messages(fake_twilio)
    await services.audit.flush()
    async with services.sessionmaker() as session:
        audited = await session.scalars(select(AuditEvent.request_id))
        generations = await session.scalars(select(Generation.request_id))
        replies = await session.scalars(
            select(OutboxItem.request_id).where(OutboxItem.kind == "twilio")
        )
        assert (audited.all(), generations.all(), replies.all()) == (
            ["edge-sms.7"],
            ["edge-sms.7"],
            ["edge-sms.7"],
        )
    sending = await wait_for(
        lambda: [
            r for r in lines(caplog, "relaychat.workers.outbox") if "twilio" in r.getMessage()
        ],
        what="the reply's delivery line",
    )
    assert [r.request_id for r in sending] == ["edge-sms.7"]


async def test_twilio_retry_of_a_message_sid_is_stored_once(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    owner, channel = await _admin_and_channel(client, fake_twilio, endpoint=None)
    form = fixture_form("inbound__sms")
    first = await post_signed(client, channel["webhook_url"], form)
    again = await post_signed(client, channel["webhook_url"], form)
    assert first.status_code == again.status_code == 200
    assert again.text == EMPTY_TWIML
    assert again.headers["idempotent-replayed"] == "true"
    stored = await messages_of(client, owner, thread(channel))
    assert len(stored) == 1


async def test_unknown_sender_without_provisioning_is_refused(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, clean_backend: Backend
) -> None:
    _, channel = await _admin_and_channel(client, fake_twilio, resolve_by_phone=True)
    before = await row_counts(clean_backend)
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 403
    assert response.json()["code"] == "channel_sender_unknown"
    after = await row_counts(clean_backend)
    for table in ("users", "conversations", "messages", "idempotency_records"):
        assert after[table] == before[table], table


async def test_unknown_sender_with_provisioning_gets_a_user(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, services: Services
) -> None:
    _, channel = await _admin_and_channel(
        client, fake_twilio, resolve_by_phone=True, provision_unknown=True, endpoint=None
    )
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__whatsapp"))
    assert response.status_code == 200, response.text
    async with services.sessionmaker() as session:
        user = await session.scalar(select(User).where(User.phone_number == SENDER))
        assert user is not None
        assert (user.name, user.role, user.email) == ("Ann Lee", "user", f"{SENDER}@phone.invalid")
    # Nobody can log in as the provisioned user.
    login = await client.post(
        "/api/auth/login", json={"email": f"{SENDER}@phone.invalid", "password": "!unusable:"}
    )
    assert login.status_code == 401
    # The next message from that number goes to the same user and thread.
    form = fixture_form("inbound__whatsapp", MessageSid="SM" + "2" * 32, Body="again")
    assert (await post_signed(client, channel["webhook_url"], form)).status_code == 200
    await services.audit.flush()
    async with services.sessionmaker() as session:
        users = (await session.scalars(select(User).where(User.phone_number == SENDER))).all()
        strategies = (await session.scalars(select(AuditEvent.strategy))).all()
    assert len(users) == 1
    assert sorted(s or "" for s in strategies) == ["conversation_owner", "provisioned"]


async def test_by_phone_reaches_the_user_with_that_number(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    _, channel = await _admin_and_channel(client, fake_twilio, resolve_by_phone=True)
    ann = await make_user(client)
    patched = await client.patch("/api/user", json={"phone_number": SENDER}, headers=ann.headers)
    assert patched.status_code == 200, patched.text
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 200, response.text
    (message, *_) = await messages_of(client, ann, thread(channel))
    assert message["text"] == "Hi, is my order ready?"


async def test_fixed_owner_gets_every_sender(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    bob = await make_user(client)
    # Someone else has the sender's number: with a fixed owner that does not matter.
    await client.patch("/api/user", json={"phone_number": SENDER}, headers=admin.headers)
    channel = await make_channel(client, admin, fake_twilio, owner=bob.email, endpoint=None)
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 200, response.text
    assert len(await messages_of(client, bob, thread(channel))) == 1
    assert (
        await client.get(f"/api/convos/{thread(channel)}", headers=admin.headers)
    ).status_code == 404


async def test_form_from_another_account_is_refused(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    _, channel = await _admin_and_channel(client, fake_twilio)
    form = fixture_form("inbound__sms", AccountSid="AC" + "9" * 32)
    response = await post_signed(client, channel["webhook_url"], form)
    assert response.status_code == 403
    assert response.json()["code"] == "twilio_account_mismatch"


async def test_json_body_is_415(client: httpx.AsyncClient, fake_twilio: FakeTwilio) -> None:
    _, channel = await _admin_and_channel(client, fake_twilio)
    response = await client.post(
        channel["webhook_url"],
        json={"From": SENDER, "Body": "hi"},
        headers={"X-Twilio-Signature": "x"},
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


async def test_form_without_message_sid_is_400(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, clean_backend: Backend
) -> None:
    _, channel = await _admin_and_channel(client, fake_twilio)
    form = [(k, v) for k, v in fixture_form("inbound__sms") if "Sid" not in k or k == "AccountSid"]
    response = await post_signed(client, channel["webhook_url"], form)
    assert response.status_code == 400
    assert response.json()["code"] == "twilio_form_invalid"
    assert (await row_counts(clean_backend))["messages"] == 0


async def test_token_from_the_environment(
    client: httpx.AsyncClient,
    fake_twilio: FakeTwilio,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin = await make_user(client)
    variable = "TWILIO_RC_TEST_TOKEN"
    monkeypatch.delenv(variable, raising=False)
    channel = await make_channel(
        client, admin, fake_twilio, auth_token=None, auth_token_env=variable
    )
    assert (channel["auth_token_env"], channel["auth_token_env_set"]) == (variable, False)
    form = fixture_form("inbound__sms")
    unset = await post_signed(client, channel["webhook_url"], form)
    assert unset.status_code == 503
    assert unset.json()["code"] == "channel_secret_missing"
    # The caller (anyone, before the signature is checked) does not learn the name; the
    # server's log and the channel's manager do.
    assert variable not in unset.text
    assert variable in caplog.text
    monkeypatch.setenv(variable, AUTH_TOKEN)
    assert (await post_signed(client, channel["webhook_url"], form)).status_code == 200
    shown = await client.get(f"/api/channels/{channel['id']}", headers=admin.headers)
    assert shown.json()["auth_token_env_set"] is True


async def test_a_stored_variable_outside_twilio_is_never_read(
    client: httpx.AsyncClient,
    fake_twilio: FakeTwilio,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A channel stored before auth_token_env had to start with TWILIO_.
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    monkeypatch.setenv("RC_TEST_SERVER_SECRET", AUTH_TOKEN)
    async with services.sessionmaker() as session:
        row = await session.get(Channel, channel["id"])
        assert row is not None
        row.secret_env, row.secret_encrypted = "RC_TEST_SERVER_SECRET", None
        await session.commit()
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 503
    assert response.json()["code"] == "channel_secret_missing"
    assert "RC_TEST_SERVER_SECRET" not in response.text


# -- threads: one per channel and sender, held by whom the channel says ----------------


@pytest.mark.parametrize("by_phone", [True, False], ids=["by_phone", "fixed_owner"])
async def test_thread_created_beforehand_by_someone_else_is_refused(
    client: httpx.AsyncClient,
    fake_twilio: FakeTwilio,
    services: Services,
    clean_backend: Backend,
    by_phone: bool,
) -> None:
    admin = await make_user(client)
    ann = await make_user(client)
    mallory = await make_user(client)
    if by_phone:
        patched = await client.patch(
            "/api/user", json={"phone_number": SENDER}, headers=ann.headers
        )
        assert patched.status_code == 200, patched.text
        channel = await make_channel(client, admin, fake_twilio, resolve_by_phone=True)
    else:
        channel = await make_channel(client, admin, fake_twilio, owner=ann.email)
    # Mallory tries to take the id the channel's thread for Ann's number will have, with
    # her own endpoint, hoping to read Ann's messages and answer them in the channel's name.
    taken = await client.post(
        "/api/convos",
        json={"conversation_id": thread(channel), "endpoint": "fake"},
        headers=mallory.headers,
    )
    assert (taken.status_code, taken.json()["code"]) == (403, "conversation_id_reserved")
    # A thread held from before that rule (no request can make one now) is refused too.
    legacy = await make_conversation(client, mallory, endpoint="fake")
    async with services.sessionmaker() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == legacy["conversation_id"])
            .values(id=thread(channel))
        )
        await session.commit()
    before = await row_counts(clean_backend)

    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "channel_thread_taken"
    assert await messages_of(client, mallory, thread(channel)) == []
    await services.audit.flush()
    after = await row_counts(clean_backend)
    assert after.pop("audit_events") == before.pop("audit_events") + 1
    assert after == before  # no message, user, idempotency record or reply
    async with services.sessionmaker() as session:
        (event,) = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.conversation_id == thread(channel))
            )
        ).all()
    assert (event.outcome, event.reason, event.status) == ("refused", "channel_thread_taken", 409)
    assert fake_twilio.messages == []


async def test_two_channels_receive_one_number_into_their_own_threads(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    bob = await make_user(client)
    carol = await make_user(client)
    first = await make_channel(client, admin, fake_twilio, owner=bob.email, endpoint=None)
    second = await make_channel(
        client, admin, fake_twilio, name="Second line", owner=carol.email, endpoint=None
    )
    assert thread(first) != thread(second)
    for channel in (first, second):
        response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
        assert response.status_code == 200, response.text
    for user, channel in ((bob, first), (carol, second)):
        (message,) = await messages_of(client, user, thread(channel))
        assert message["text"] == "Hi, is my order ready?"
        assert message["metadata"]["channel_id"] == channel["id"]


async def test_a_disabled_owner_takes_no_sms_until_enabled_again(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, clean_backend: Backend
) -> None:
    """Whether the channel names its owner or finds them by number, a disabled account's
    thread takes nothing (and so sends no SMS reply); enabled again, it does."""
    admin = await make_user(client)
    bob, ann = await make_user(client), await make_user(client)
    fixed = await make_channel(client, admin, fake_twilio, owner=bob.email, endpoint=None)
    by_phone = await make_channel(
        client, admin, fake_twilio, resolve_by_phone=True, endpoint=None, name="By number"
    )
    patched = await client.patch("/api/user", json={"phone_number": SENDER}, headers=ann.headers)
    assert patched.status_code == 200, patched.text
    for who in (bob, ann):
        disabled = await client.patch(
            f"/api/admin/users/{who.id}", json={"disabled": True}, headers=admin.headers
        )
        assert disabled.status_code == 200, disabled.text

    before = await row_counts(clean_backend)
    for number, channel in enumerate((fixed, by_phone)):
        form = fixture_form("inbound__sms", MessageSid=f"SM{number}" + "3" * 31)
        response = await post_signed(client, channel["webhook_url"], form)
        assert (response.status_code, response.json()["code"]) == (403, "user_disabled")
    after = await row_counts(clean_backend)
    for table in ("conversations", "messages", "generations", "idempotency_records"):
        assert after[table] == before[table], table
    assert not fake_twilio.messages

    enabled = await client.patch(
        f"/api/admin/users/{bob.id}", json={"disabled": False}, headers=admin.headers
    )
    assert enabled.status_code == 200, enabled.text
    form = fixture_form("inbound__sms", MessageSid="SM0" + "3" * 31)
    response = await post_signed(client, fixed["webhook_url"], form)
    assert response.status_code == 200, response.text
    assert (await row_counts(clean_backend))["messages"] == before["messages"] + 1
