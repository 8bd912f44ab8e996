"""The event stream routes: per user, per conversation, authenticated without URLs."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from relaychat.api import events
from relaychat.app import create_app
from relaychat.http.deps import get_stream_user
from relaychat.http.problems import install_problem_handlers
from relaychat.metrics import REGISTRY
from relaychat.services import Services
from tests.support.factories import make_conversation, make_key, make_user, post_message
from tests.support.live import serving
from tests.support.sse_client import collect_until

# Only turns a hang into a failure; no assertion depends on how long anything takes.
GUARD = 10.0


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


# -- served before routing (http/sse_app.py), answered by the routes when refused ----------


async def test_refusals_are_the_routes_problems(client: httpx.AsyncClient, live_url: str) -> None:
    user = await make_user(client)
    long_id = {"Last-Event-ID": "1" * 65}
    async with httpx.AsyncClient(base_url=live_url) as http:  # no cookies
        anonymous = await http.get("/api/events")
        bad_token = await http.get("/api/events", headers={"Authorization": "Bearer nope"})
        bad_cookie = await http.get("/api/events", headers={"Cookie": "relaychat_access=nope"})
        long_header = await http.get("/api/events", headers={**user.headers, **long_id})
        long_path = await http.get(f"/api/convos/{'x' * 129}/events", headers=user.headers)
        not_get = await http.post("/api/events", headers=user.headers)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert (bad_token.status_code, bad_token.json()["code"]) == (401, "invalid_token")
    assert (bad_cookie.status_code, bad_cookie.json()["code"]) == (401, "invalid_token")
    assert (long_header.status_code, long_header.json()["field"]) == (422, "header.last-event-id")
    # An id no conversation can have is simply not found (domain/messaging/conversation_ids).
    assert (long_path.status_code, long_path.json()["code"]) == (404, "conversation_not_found")
    assert (not_get.status_code, not_get.json()["code"]) == (405, "method_not_allowed")


def _open_streams() -> float:
    return REGISTRY.get_sample_value("relaychat_open_event_streams") or 0.0


async def test_streams_are_served_before_routing_counted_and_released(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    app = create_app(services=services)

    def routed() -> None:
        raise AssertionError("a stream request reached the router")

    app.dependency_overrides[get_stream_user] = routed
    before = _open_streams()
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        for path in ("/api/events", f"/api/convos/{cid}/events"):
            async with http.stream("GET", path, headers=user.headers) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
                assert stream.headers["cache-control"] == "no-cache"
                assert stream.headers["x-accel-buffering"] == "no"
                await post_message(client, user, cid, text=path)
                seen = await collect_until(stream, lambda e: e.event == "message.created")
                assert seen[-1].data["message"]["text"] == path
                assert services.bus.subscriber_count(user.id) == 1
                assert _open_streams() == before + 1
            # The closed connection frees the subscription promptly, not at the next ping.
            async with asyncio.timeout(GUARD):
                while services.bus.subscriber_count(user.id) or _open_streams() != before:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)


async def test_reconnecting_with_last_event_id_replays_what_was_missed(
    client: httpx.AsyncClient, live_url: str
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    async with httpx.AsyncClient(base_url=live_url) as http:
        async with http.stream("GET", "/api/events", headers=user.headers) as stream:
            await post_message(client, user, cid, text="seen")
            seen = await collect_until(stream, lambda e: e.event == "message.created")
        await post_message(client, user, cid, text="missed")
        headers = {**user.headers, "Last-Event-ID": seen[-1].id or ""}
        async with http.stream("GET", "/api/events", headers=headers) as stream:
            replayed = await collect_until(stream, lambda e: e.event == "message.created")
    assert replayed[-1].data["message"]["text"] == "missed"


async def test_idle_streams_get_a_ping_after_the_configured_silence(
    client: httpx.AsyncClient, live_url: str, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services.settings, "sse_heartbeat_seconds", 0.05)
    user = await make_user(client)
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream("GET", "/api/events", headers=user.headers) as stream,
    ):
        async with asyncio.timeout(GUARD):
            lines = stream.aiter_lines()
            while await anext(lines) != ": ping":
                pass


async def test_the_routes_stream_without_the_middleware(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    app = FastAPI()
    app.state.services = services
    install_problem_handlers(app)
    app.include_router(events.router)
    async with (
        serving(app) as url,
        httpx.AsyncClient(base_url=url) as http,
        http.stream("GET", f"/api/convos/{cid}/events", headers=user.headers) as stream,
    ):
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        await post_message(client, user, cid, text="routed")
        seen = await collect_until(stream, lambda e: e.event == "message.created")
    assert seen[-1].data["message"]["text"] == "routed"


def test_openapi_documents_both_streams(services: Services) -> None:
    paths = create_app(services=services).openapi()["paths"]
    for path in ("/api/events", "/api/convos/{conversation_id}/events"):
        operation = paths[path]["get"]
        assert "text/event-stream" in operation["responses"]["200"]["content"]
        assert operation["security"] == [{"HTTPBearer": []}]
        params = {(p["in"], p["name"]) for p in operation["parameters"]}
        assert {("header", "last-event-id"), ("cookie", "relaychat_access")} <= params
        assert not any(p["in"] == "query" for p in operation["parameters"])


async def test_events_carry_the_rest_shape_of_conversations_and_messages(
    client: httpx.AsyncClient, live_url: str
) -> None:
    # One model serves both (relaychat.resources): same keys, same order, same values,
    # times included; REST adds only what it alone answers (`html`, `generation_id`).
    user = await make_user(client)
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream("GET", "/api/events", headers=user.headers) as stream,
    ):
        conversation = await make_conversation(client, user, title="Shapes")  # the REST answer
        cid = conversation["conversation_id"]
        posted = await post_message(client, user, cid, text="héllo", metadata={"n": [1, None]})
        seen = await collect_until(stream, lambda e: e.event == "message.created")
    by_type = {e.event: e.data for e in seen}
    message = (
        await client.get(f"/api/messages/{cid}/{posted['message_id']}", headers=user.headers)
    ).json()
    assert list(by_type["conversation.created"]["conversation"].items()) == list(
        conversation.items()
    )
    rest_only = {"html", "generation_id"}
    assert {k: message[k] for k in rest_only} == {"html": None, "generation_id": None}
    event_message = by_type["message.created"]["message"]
    assert list(event_message.items()) == [(k, v) for k, v in message.items() if k not in rest_only]
    assert event_message["created_at"].endswith("Z")


async def test_a_conversation_made_by_an_external_message_is_announced_as_stored(
    client: httpx.AsyncClient, live_url: str
) -> None:
    # The message's write to the conversation row (its thread lock, one unseen message)
    # goes past the entity; the event, rendered from the entity after the commit, must
    # still say what REST then reads.
    user = await make_user(client)
    key = await make_key(client, user, can_create_conversations=True)
    cid = "sms-thread-announced"
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream("GET", "/api/events", headers=user.headers) as stream,
    ):
        posted = await client.post(
            f"/api/messages/{cid}",
            json={"role": "external", "content": "hello", "respond": False},
            headers=key.headers,
        )
        assert posted.status_code == 201, posted.text
        seen = await collect_until(stream, lambda e: e.event == "message.created")
    announced = next(e.data for e in seen if e.event == "conversation.created")["conversation"]
    stored = (await client.get(f"/api/convos/{cid}", headers=user.headers)).json()
    assert announced["unseen_external"] == 1
    assert announced == stored
