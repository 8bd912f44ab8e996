"""The event stream routes: per user, per conversation, authenticated without URLs."""

from __future__ import annotations

import httpx

from tests.factories import make_conversation, make_user, post_message
from tests.sse_client import collect_until


async def test_conversation_stream_is_filtered(client: httpx.AsyncClient, live_url: str) -> None:
    user = await make_user(client)
    a = (await make_conversation(client, user))["conversation_id"]
    b = (await make_conversation(client, user))["conversation_id"]
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream("GET", f"/api/convos/{a}/events", headers=user.headers) as stream,
    ):
        await post_message(client, user, b, text="elsewhere")
        await post_message(client, user, a, text="here")
        seen = await collect_until(stream, lambda e: e.event == "message.created")
    assert [e.data["message"]["text"] for e in seen] == ["here"]


async def test_streams_of_other_users_conversations_are_not_found(
    client: httpx.AsyncClient, live_url: str
) -> None:
    alice, bob = await make_user(client), await make_user(client)
    cid = (await make_conversation(client, alice))["conversation_id"]
    async with httpx.AsyncClient(base_url=live_url) as http:
        response = await http.get(f"/api/convos/{cid}/events", headers=bob.headers)
    assert (response.status_code, response.json()["code"]) == (404, "conversation_not_found")


async def test_event_stream_accepts_the_access_cookie_but_never_a_query_token(
    client: httpx.AsyncClient, live_url: str
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    async with httpx.AsyncClient(base_url=live_url) as http:
        in_url = await http.get(f"/api/events?access_token={user.access_token}")
        assert in_url.status_code == 401
        cookie = {"Cookie": f"relaychat_access={user.access_token}"}
        async with http.stream("GET", "/api/events", headers=cookie) as stream:
            assert stream.status_code == 200
            await post_message(client, user, cid, text="via cookie")
            seen = await collect_until(stream, lambda e: e.event == "message.created")
    assert seen[-1].data["message"]["text"] == "via cookie"


async def test_other_users_never_see_my_events(client: httpx.AsyncClient, live_url: str) -> None:
    alice, bob = await make_user(client), await make_user(client)
    mine = (await make_conversation(client, alice))["conversation_id"]
    theirs = (await make_conversation(client, bob))["conversation_id"]
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream("GET", "/api/events", headers=bob.headers) as stream,
    ):
        await post_message(client, alice, mine, text="alice only")
        await post_message(client, bob, theirs, text="bob's")
        seen = await collect_until(stream, lambda e: e.event == "message.created")
    assert [e.data["message"]["text"] for e in seen] == ["bob's"]


async def test_login_sets_the_access_cookie_for_event_streams(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    login = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    cookies = [c.lower() for c in login.headers.get_list("set-cookie")]
    access = next(c for c in cookies if c.startswith("relaychat_access="))
    for attribute in ("httponly", "path=/api", "samesite=strict", "secure"):
        assert attribute in access
