"""Share links on both databases: a snapshot of one branch that later writes never reach,
revocation and deletion, owners only, sender details by opt-in, unguessable tokens."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import select

from relaychat.services import Services
from relaychat.storage.models import Share, SharedMessage
from tests.support.factories import TestUser, make_conversation, make_user, post_message
from tests.support.settings import VERBATIM_KEY

SYSTEM = {"x-api-key": VERBATIM_KEY}
PHONE = "+14155552671"


async def share(client: httpx.AsyncClient, user: TestUser, cid: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/api/convos/{cid}/shares", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def page(client: httpx.AsyncClient, made: dict[str, Any]) -> httpx.Response:
    """The shared page as someone without a session opens it."""
    client.cookies.clear()
    return await client.get(f"/s/{made['token']}")


async def said(client: httpx.AsyncClient, user: TestUser, cid: str, text: str, **more: Any) -> str:
    message = await post_message(client, user, cid, text=text, respond=False, **more)
    return str(message["message_id"])


async def test_the_page_shows_the_snapshot_and_never_what_came_later(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client, name="Ann")
    cid = (await make_conversation(client, user, title="Trip plans"))["conversation_id"]
    await said(client, user, cid, "first words")
    last = await said(client, user, cid, "second words")
    made = await share(client, user, cid)
    assert made["message_id"] == last and made["message_count"] == 2
    assert made["url"] == f"https://testserver/s/{made['token']}"
    await said(client, user, cid, "written after sharing")
    await client.patch(f"/api/convos/{cid}", json={"title": "Renamed"}, headers=user.headers)

    shown = await page(client, made)
    assert shown.status_code == 200
    assert shown.headers["content-type"].startswith("text/html")
    assert "first words" in shown.text and "second words" in shown.text
    assert "written after sharing" not in shown.text
    assert "Trip plans" in shown.text and "Renamed" not in shown.text
    assert "Ann" in shown.text


async def test_a_branch_is_shared_up_to_the_message_named(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    root = await said(client, user, cid, "the question")
    older = await said(client, user, cid, "the old answer")
    newer = await said(client, user, cid, "the new answer", parent_message_id=root)
    # By default, the branch the chat shows: the newest answer at the fork.
    default = await page(client, await share(client, user, cid))
    assert "the question" in default.text and "the new answer" in default.text
    assert "the old answer" not in default.text
    chosen = await share(client, user, cid, message_id=older)
    assert chosen["message_id"] == older and chosen["message_count"] == 2
    shown = await page(client, chosen)
    assert "the old answer" in shown.text and "the new answer" not in shown.text
    up_to_root = await page(client, await share(client, user, cid, message_id=root))
    assert "the question" in up_to_root.text and "answer" not in up_to_root.text
    assert newer  # posted, and left out above


async def test_revoked_and_deleted_shares_are_not_found(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    await said(client, user, cid, "hello")
    kept, revoked = await share(client, user, cid), await share(client, user, cid)
    gone = await client.delete(f"/api/shares/{revoked['share_id']}", headers=user.headers)
    assert gone.status_code == 204
    assert (await page(client, revoked)).status_code == 404
    assert (await page(client, kept)).status_code == 200
    again = await client.delete(f"/api/shares/{revoked['share_id']}", headers=user.headers)
    assert again.status_code == 404 and again.json()["code"] == "share_not_found"
    listed = await client.get(f"/api/convos/{cid}/shares", headers=user.headers)
    assert [s["share_id"] for s in listed.json()["shares"]] == [kept["share_id"]]

    # Deleting the conversation takes its shares and their snapshots with it.
    deleted = await client.delete(f"/api/convos/{cid}", headers=user.headers)
    assert deleted.status_code == 204
    missing = await page(client, kept)
    assert missing.status_code == 404 and "hello" not in missing.text
    assert (await client.get("/api/shares", headers=user.headers)).json()["shares"] == []


async def test_the_share_of_a_disabled_owner_is_not_found(client: httpx.AsyncClient) -> None:
    admin = await make_user(client)
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    await said(client, user, cid, "hello")
    made = await share(client, user, cid)
    disabled = await client.patch(
        f"/api/admin/users/{user.id}", json={"disabled": True}, headers=admin.headers
    )
    assert disabled.status_code == 200, disabled.text
    assert (await page(client, made)).status_code == 404


async def test_only_the_owner_makes_lists_and_revokes(client: httpx.AsyncClient) -> None:
    owner, other = await make_user(client), await make_user(client)
    cid = (await make_conversation(client, owner))["conversation_id"]
    await said(client, owner, cid, "private")
    made = await share(client, owner, cid)
    for method, path in [
        ("POST", f"/api/convos/{cid}/shares"),
        ("GET", f"/api/convos/{cid}/shares"),
    ]:
        response = await client.request(method, path, json={}, headers=other.headers)
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "conversation_not_found"
    revoke = await client.delete(f"/api/shares/{made['share_id']}", headers=other.headers)
    assert revoke.status_code == 404 and revoke.json()["code"] == "share_not_found"
    listed = await client.get("/api/shares", headers=other.headers)
    assert listed.json() == {"shares": []}
    assert (await page(client, made)).status_code == 200
    mine = await client.get("/api/shares", headers=owner.headers)
    assert [s["share_id"] for s in mine.json()["shares"]] == [made["share_id"]]
    signed_out = await client.get("/api/shares")
    assert signed_out.status_code == 401


async def test_bad_requests_write_nothing(client: httpx.AsyncClient, services: Services) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    empty = await client.post(f"/api/convos/{cid}/shares", json={}, headers=user.headers)
    assert empty.status_code == 422 and empty.json()["code"] == "nothing_to_share"
    elsewhere = (await make_conversation(client, user))["conversation_id"]
    foreign = await said(client, user, elsewhere, "in another conversation")
    await said(client, user, cid, "here")
    for body, code in [
        ({"message_id": foreign}, "message_not_found"),
        ({"message_id": "no-such-message"}, "message_not_found"),
        ({"include_everything": True}, "validation_error"),
        ({"include_phone_numbers": "please"}, "validation_error"),
    ]:
        response = await client.post(f"/api/convos/{cid}/shares", json=body, headers=user.headers)
        assert response.json()["code"] == code, response.text
    async with services.sessionmaker() as session:
        assert (await session.scalars(select(Share))).all() == []


async def external_messages(client: httpx.AsyncClient, user: TestUser, cid: str) -> None:
    """An SMS with a phone number, and a message from a named key with no source."""
    sms = await client.post(
        f"/api/messages/{cid}",
        json={
            "role": "external",
            "content": "Running late, sorry",
            "metadata": {"source": "sms", "phoneNumber": PHONE, "account": "acme-42"},
            "respond": False,
        },
        headers=SYSTEM,
    )
    assert sms.status_code == 201, sms.text
    key = await client.post(
        "/api/keys", json={"name": "Billing robot", "permissions": {}}, headers=user.headers
    )
    assert key.status_code == 201, key.text
    bot = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "Invoice paid", "respond": False},
        headers={"x-api-key": key.json()["secret"]},
    )
    assert bot.status_code == 201, bot.text


async def test_sender_details_are_shown_only_when_opted_in(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, title="Support"))["conversation_id"]
    await external_messages(client, user, cid)
    plain = await share(client, user, cid)
    assert not plain["include_phone_numbers"] and not plain["include_key_names"]
    hidden = (await page(client, plain)).text
    assert "Running late, sorry" in hidden and "Invoice paid" in hidden
    assert PHONE not in hidden and "5552671" not in hidden
    assert "Billing robot" not in hidden
    assert "acme-42" not in hidden  # other metadata is never shared
    assert "sms" in hidden and "External" in hidden

    phones = (await page(client, await share(client, user, cid, include_phone_numbers=True))).text
    assert PHONE in phones and "Billing robot" not in phones
    both = await share(client, user, cid, include_phone_numbers=True, include_key_names=True)
    assert both["include_key_names"]
    shown = (await page(client, both)).text
    assert PHONE in shown and "Billing robot" in shown and "system key" in shown
    assert "acme-42" not in shown


async def test_tokens_are_unguessable_and_only_their_hash_is_kept(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    await said(client, user, cid, "hello")
    made = [await share(client, user, cid) for _ in range(5)]
    tokens = [m["token"] for m in made]
    assert len(set(tokens)) == len(tokens)
    for m in made:
        # 256 random bits, URL-safe; nothing in it derived from ids or times.
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", m["token"]), m["token"]
        assert m["token_hint"] == m["token"][:6]
        assert m["share_id"] not in m["token"] and cid not in m["token"]
    listed = await client.get(f"/api/convos/{cid}/shares", headers=user.headers)
    assert not any(t in listed.text for t in tokens)
    async with services.sessionmaker() as session:
        rows = [repr(r.__dict__) for r in (await session.scalars(select(Share))).all()]
        rows += [repr(r.__dict__) for r in (await session.scalars(select(SharedMessage))).all()]
    assert rows and not any(t in row for t in tokens for row in rows)

    token = tokens[0]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for guess in [
        made[0]["share_id"],
        flipped,
        token[:-1],
        token + "A",
        token.upper() if token.upper() != token else token.lower(),
        "x" * 43,
        "%00" + token,
    ]:
        client.cookies.clear()
        assert (await client.get(f"/s/{guess}")).status_code == 404, guess


async def test_markup_in_a_snapshot_stays_text(client: httpx.AsyncClient) -> None:
    user = await make_user(client, name="<b>Ann</b>")
    cid = (await make_conversation(client, user, title="<script>alert(1)</script>"))[
        "conversation_id"
    ]
    await said(client, user, cid, '<img src=x onerror="alert(1)"> and <script>alert(2)</script>')
    shown = (await page(client, await share(client, user, cid))).text
    assert "<script" not in shown and "<img" not in shown and "<b>Ann" not in shown
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
