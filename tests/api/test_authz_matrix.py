"""The authorization matrix: user B on user A's objects, on every route that takes an id.

The routes come from the app itself, so a route added without a case in `CASES` fails
`test_every_route_has_a_case`. For every case, B's request naming A's object must get
the very answer B gets for an id that names nothing (404, the same body: nothing about A's
object is revealed) and must write nothing; the same request on B's own object must then
succeed, which proves the case reaches the ownership check and not a validation error.
Lists must show B nothing of A's, A's ids inside B's request bodies are refused like
missing ones, and B's API keys must not reach A's conversations.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import APIRouter
from fastapi.routing import iter_route_contexts
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.routing import Mount
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from relaychat.app import create_app
from relaychat.devtools.fake_llm import FakeLLM
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.models import Base
from relaychat.web.pages import CONSOLE_PAGES
from tests.support.backends import Backend, row_counts
from tests.support.factories import TestKey, TestUser, make_key, make_user
from tests.support.settings import TEST_JWT_SECRET, VERBATIM_KEY, llm_settings

Route = tuple[str, str]  # (method, path template as the app declares it)

# Written by the audit writer in the background, for refused requests too: that a refusal
# is recorded is the point of it, so these rows are not a write by B (nor their hourly
# counts, kept with them).
UNWATCHED_TABLES = frozenset({"audit_events", "audit_hours"})
# Written in the background when a key is used, refused or not: B's own key's row.
UNWATCHED_COLUMNS = frozenset({"api_keys.last_used_at"})
WAIT_SECONDS = 30.0
BASE_URL = "https://testserver"
# Nothing listens on the discard port: deliveries, were they attempted, would fail at once.
HOOK_URL = "http://127.0.0.1:9/hook"

# The kind of object a path parameter names, unless a probe says otherwise.
PARAM_KINDS = {
    "conversation_id": "conversation",
    "message_id": "reply",
    "generation_id": "generation",
    "agent_id": "agent",
    "key_id": "key",
    "endpoint_id": "webhook",
    "delivery_id": "delivery",
    "channel_id": "channel",
    "share_id": "share",
    "schedule_id": "schedule",
}


@dataclass(frozen=True)
class Probe:
    """One request B makes with ids of A's objects in the path.

    `expect` is what B must get: `hidden` — a 404 identical to the answer for an id
    that names nothing; `read_only` — a 403 `agent_read_only` (public agents are visible
    to everyone by design, but only their owner may change them); `visible` — 200.
    `twilio` routes are signed with the channel's auth token instead of a bearer token:
    B signs with its own channel's, which can never pass for A's channel (a 403).
    """

    kinds: dict[str, str] = field(default_factory=dict)
    body: Any = None
    expect: Literal["hidden", "read_only", "visible"] = "hidden"
    twilio: Literal["inbound", "status"] | None = None
    # An event stream answers for as long as it is open: no 2xx control for it here.
    streams: bool = False


HIDDEN = (Probe(),)
CASES: dict[Route, tuple[Probe, ...]] = {
    ("GET", "/api/convos/{conversation_id}"): HIDDEN,
    ("PATCH", "/api/convos/{conversation_id}"): (Probe(body={"title": "renamed by B"}),),
    ("DELETE", "/api/convos/{conversation_id}"): HIDDEN,
    ("POST", "/api/convos/{conversation_id}/read"): HIDDEN,
    ("GET", "/api/convos/{conversation_id}/export"): HIDDEN,
    ("GET", "/api/convos/{conversation_id}/shares"): HIDDEN,
    ("POST", "/api/convos/{conversation_id}/shares"): (Probe(body={}),),
    ("DELETE", "/api/shares/{share_id}"): HIDDEN,
    # Served by the EventStreams middleware ahead of routing (http/sse_app.py), which hands
    # anything it refuses on to this route: the request below goes through both.
    ("GET", "/api/convos/{conversation_id}/events"): (Probe(streams=True),),
    ("GET", "/api/messages/{conversation_id}"): HIDDEN,
    ("GET", "/api/messages/{conversation_id}/{message_id}"): HIDDEN,
    ("POST", "/api/messages/{conversation_id}"): (
        Probe(body={"text": "written by B", "respond": False}),
    ),
    ("POST", "/api/messages/{conversation_id}/{message_id}/regenerate"): HIDDEN,
    ("GET", "/api/generations/{generation_id}"): HIDDEN,
    ("POST", "/api/generations/{generation_id}/abort"): HIDDEN,
    ("GET", "/api/agents/{agent_id}"): (
        Probe(),
        Probe(kinds={"agent_id": "public_agent"}, expect="visible"),
    ),
    ("PATCH", "/api/agents/{agent_id}"): (
        Probe(body={"description": "changed by B"}),
        Probe(
            kinds={"agent_id": "public_agent"},
            body={"description": "changed by B"},
            expect="read_only",
        ),
    ),
    ("DELETE", "/api/agents/{agent_id}"): (
        Probe(),
        Probe(kinds={"agent_id": "public_agent"}, expect="read_only"),
    ),
    ("GET", "/api/keys/{key_id}"): HIDDEN,
    ("PATCH", "/api/keys/{key_id}"): (Probe(body={"name": "renamed by B"}),),
    ("DELETE", "/api/keys/{key_id}"): HIDDEN,
    ("POST", "/api/keys/{key_id}/rotate"): HIDDEN,
    ("GET", "/api/keys/{key_id}/audit"): HIDDEN,
    ("GET", "/api/webhooks/{endpoint_id}"): HIDDEN,
    ("PATCH", "/api/webhooks/{endpoint_id}"): (Probe(body={"description": "changed by B"}),),
    ("DELETE", "/api/webhooks/{endpoint_id}"): HIDDEN,
    ("GET", "/api/webhooks/{endpoint_id}/deliveries"): HIDDEN,
    ("GET", "/api/webhooks/{endpoint_id}/deliveries/{delivery_id}"): HIDDEN,
    ("POST", "/api/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver"): HIDDEN,
    ("GET", "/api/channels/{channel_id}"): HIDDEN,
    ("GET", "/api/channels/{channel_id}/messages"): HIDDEN,
    ("PATCH", "/api/channels/{channel_id}"): (Probe(body={"name": "renamed by B"}),),
    ("DELETE", "/api/channels/{channel_id}"): HIDDEN,
    ("POST", "/api/channels/twilio/{channel_id}"): (Probe(twilio="inbound"),),
    ("POST", "/api/channels/twilio/{channel_id}/status/{message_id}"): (
        Probe(kinds={"message_id": "channel_reply"}, twilio="status"),
    ),
    ("GET", "/api/schedules/{schedule_id}"): HIDDEN,
    ("PATCH", "/api/schedules/{schedule_id}"): (Probe(body={"name": "renamed by B"}),),
    ("DELETE", "/api/schedules/{schedule_id}"): HIDDEN,
    ("POST", "/api/schedules/{schedule_id}/run"): HIDDEN,
    ("GET", "/api/schedules/{schedule_id}/runs"): HIDDEN,
}

# Routes with a path parameter that names no one's object, and why.
NO_OBJECTS: dict[Route, str] = {
    ("GET", "/c/{conversation_id}"): "the web UI's page shell, the same for any id "
    "(tests/web checks it); the page reads the conversation through the API",
    ("GET", "/static/{name}"): "the web UI's own files, public by nature",
    ("GET", "/s/{token}"): "a share link's page: whoever holds the unguessable token may "
    "read its snapshot, by design, signed in or not (tests/api/test_shares.py checks that "
    "only a token its owner made and has not revoked opens anything)",
    **{
        ("GET", f"/{page}/{{item}}"): "a console page's shell, the same for any item; the "
        "page reads the item through the API"
        for page in CONSOLE_PAGES
    },
    ("PATCH", "/api/admin/users/{user_id}"): "admins only: a plain user is refused 403 "
    "`admin_required` whatever the id, and writes nothing (tests/api/test_admin_users.py)",
}

# GET routes without an id: each one either lists what the caller owns (checked by
# `check_lists`, with these query strings) or says why it holds nobody's objects.
LISTS: dict[Route, tuple[str, ...]] = {
    ("GET", "/api/convos"): ("", "?archived=true"),
    # The file of every conversation of the caller's, with their messages.
    ("GET", "/api/convos/export"): ("",),
    ("GET", "/api/agents"): ("",),
    ("GET", "/api/keys"): ("", "?all=true"),
    # The server's own keys, by reference: admins only (a plain user gets 403 below).
    ("GET", "/api/keys/environment"): ("",),
    ("GET", "/api/webhooks"): ("",),
    ("GET", "/api/channels"): ("", "?all=true"),
    ("GET", "/api/schedules"): ("",),
    ("GET", "/api/admin/audit"): ("", "?outcome=accepted"),
    ("GET", "/api/admin/users"): ("", "?q=example"),
    # The instance's health: admins only (a plain user gets 403 below).
    ("GET", "/api/admin/doctor"): ("",),
    ("GET", "/api/user"): ("",),
    # Counts, no ids: what they count is scoped in tests/api/test_stats.py.
    ("GET", "/api/stats"): ("", "?window=7d"),
    # Sums by key and agent ids: only the caller's (scoped in tests/api/test_usage.py).
    ("GET", "/api/usage"): ("", "?group_by=key", "?group_by=agent", "?all=true"),
    # Both users' conversations are titled "matrix" and hold messages from the fake model.
    ("GET", "/api/search"): ("?q=matrix", "?q=matrix&role=user", "?q=matr*"),
    ("GET", "/api/shares"): ("",),
}
NOT_LISTS: dict[Route, str] = {
    ("GET", "/api/events"): "the caller's own event stream (realtime tests check its scope)",
    ("GET", "/api/endpoints"): "the server's configured LLM endpoints",
    ("GET", "/api/agents/tools"): "the server's tool catalogue",
    ("GET", "/api/webhooks/event-types"): "the server's catalogue of webhook event types",
}
# Mounted ASGI apps, which the enumeration cannot see into.
MOUNTS: dict[str, str] = {
    "/v1": "the OpenAI-compatible API: every call acts for the caller's owner only; another "
    "owner's conversation (by token or key) and agent are refused as missing in "
    "tests/openai_api/test_errors.py, models are listed per owner in test_models.py",
}


def app_routes(app: Any) -> Iterator[Route]:
    """Every (method, path) the app serves, through included routers and mounts."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            yield ("MOUNT", route.path)
            continue
        for method in sorted(context.methods or ()):
            if method != "HEAD":
                yield (method, str(context.path))


def has_id(route: Route) -> bool:
    return "{" in route[1]


def params_of(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def coverage_problems(app: Any) -> list[str]:
    """What keeps the tables below from covering the app's routes (nothing: empty)."""
    routes = set(app_routes(app))
    problems: list[str] = []
    with_id = {r for r in routes if has_id(r) and r[0] != "MOUNT"} - set(NO_OBJECTS)
    if missing := sorted(with_id - set(CASES)):
        problems.append(
            "routes that take an id have no case in the authorization matrix "
            f"(add them to CASES in {__name__}): {missing}"
        )
    if stale := sorted(set(CASES) - with_id):
        problems.append(f"CASES name routes the app no longer has: {stale}")
    lists = {r for r in routes if r[0] == "GET" and r[1].startswith("/api/") and not has_id(r)}
    if unclassified := sorted(lists - set(LISTS) - set(NOT_LISTS)):
        problems.append(
            "GET routes without an id must be in LISTS (checked for leaks) or NOT_LISTS "
            f"(saying why they show nobody's objects): {unclassified}"
        )
    if stale := sorted((set(LISTS) | set(NOT_LISTS)) - routes):
        problems.append(f"LISTS/NOT_LISTS name routes the app no longer has: {stale}")
    mounts = sorted(path for method, path in routes if method == "MOUNT" and path not in MOUNTS)
    if mounts:
        problems.append(f"mounted apps need an entry in MOUNTS saying who may reach what: {mounts}")
    for route, probes in CASES.items():
        for probe in probes:
            if unknown := set(probe.kinds) - set(params_of(route[1])):
                problems.append(f"{route}: the probe names parameters the path lacks: {unknown}")
    return problems


def test_every_route_has_a_case(tmp_path: Path) -> None:
    """A route added without a case here (or a case whose route is gone) fails."""
    settings = Settings(jwt_secret=TEST_JWT_SECRET, data_dir=tmp_path)
    problems = coverage_problems(create_app(settings))
    assert not problems, "\n".join(problems)


def test_a_new_route_or_mount_without_a_case_is_named(tmp_path: Path) -> None:
    app = create_app(Settings(jwt_secret=TEST_JWT_SECRET, data_dir=tmp_path))
    router = APIRouter()

    @router.get("/api/notes/{note_id}")
    async def note(note_id: str) -> str:
        return note_id

    @router.get("/api/notes")
    async def notes() -> list[str]:
        return []

    app.include_router(router)
    app.mount("/files", Starlette())
    problems = "\n".join(coverage_problems(app))
    for named in ("('GET', '/api/notes/{note_id}')", "('GET', '/api/notes')", "'/files'"):
        assert named in problems, problems


# -- the objects each user owns -----------------------------------------------------------


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    # Webhook endpoints on loopback (nothing is delivered: the outbox is stopped below).
    return llm_settings(backend, tmp_path, fake_llm, webhook_allow_private_networks=True)


@dataclass
class World:
    """One user's objects, by kind, and what it takes to act as that user."""

    user: TestUser
    ids: dict[str, str]
    key: TestKey
    account_sid: str
    auth_token: str
    sender: str


async def within(what: str, call: Awaitable[httpx.Response]) -> httpx.Response:
    """The response, or a failure naming the request if it never comes (a leaked stream)."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            return await call
    except TimeoutError:
        raise AssertionError(f"{what}: no complete answer (a stream was opened?)") from None


async def settled(
    client: httpx.AsyncClient, user: TestUser, conversation_id: str, *, titled: bool = False
) -> list[dict[str, Any]]:
    """The conversation's messages once no reply is streaming (and it has its title)."""
    for _ in range(int(WAIT_SECONDS / 0.05)):
        listed = await client.get(f"/api/messages/{conversation_id}", headers=user.headers)
        assert listed.status_code == 200, listed.text
        messages: list[dict[str, Any]] = listed.json()["messages"]
        replies = [m for m in messages if m["role"] == "assistant"]
        done = replies and all(m["status"] != "streaming" for m in replies)
        if done and titled:
            conversation = await client.get(f"/api/convos/{conversation_id}", headers=user.headers)
            done = bool(conversation.json()["title"])
        if done:
            return messages
        await asyncio.sleep(0.05)
    raise AssertionError(f"the reply in {conversation_id} never finished")


def sign(url: str, pairs: list[tuple[str, str]], token: str) -> str:
    signature: str = RequestValidator(token).compute_signature(url, dict(pairs))
    return signature


def inbound_form(world: World) -> list[tuple[str, str]]:
    return [
        ("MessageSid", f"SM{secrets.token_hex(16)}"),
        ("AccountSid", world.account_sid),
        ("From", world.sender),
        ("To", "+14155550100"),
        ("Body", "Hi, is my order ready?"),
        ("NumMedia", "0"),
    ]


def status_form(world: World) -> list[tuple[str, str]]:
    return [
        ("MessageSid", f"SM{secrets.token_hex(16)}"),
        ("MessageStatus", "delivered"),
        ("AccountSid", world.account_sid),
    ]


async def post_twilio(
    client: httpx.AsyncClient, path: str, pairs: list[tuple[str, str]], token: str
) -> httpx.Response:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(BASE_URL + path, pairs, token),
    }
    return await client.post(path, content=urlencode(pairs), headers=headers)


async def build_world(client: httpx.AsyncClient, user: TestUser, sender: str) -> World:
    """A conversation with an answered message, agents, a key, a webhook endpoint with a
    delivery, and a Twilio channel whose thread has an answered message."""
    ids: dict[str, str] = {}

    async def created(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await client.post(path, json=body, headers=user.headers)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    hook = await created("/api/webhooks", {"url": HOOK_URL, "events": ["conversation.created"]})
    ids["webhook"] = hook["webhook"]["id"]
    # A title up front: no title is written in the background after the first reply.
    conversation = await created("/api/convos", {"endpoint": "fake", "title": "matrix"})
    ids["conversation"] = conversation["conversation_id"]
    posted = await client.post(
        f"/api/messages/{ids['conversation']}",
        json={"text": "hello", "respond": True},
        headers=user.headers,
    )
    assert posted.status_code == 202, posted.text
    ids["message"] = posted.json()["message"]["message_id"]
    ids["reply"] = posted.json()["response_message_id"]
    ids["generation"] = posted.json()["generation_id"]
    await settled(client, user, ids["conversation"])
    deliveries = await client.get(
        f"/api/webhooks/{ids['webhook']}/deliveries", headers=user.headers
    )
    [delivery] = deliveries.json()["deliveries"]
    ids["delivery"] = delivery["id"]

    agent = await created("/api/agents", {"name": "private agent", "endpoint": "fake"})
    ids["agent"] = agent["agent_id"]
    public = await created(
        "/api/agents", {"name": "public agent", "endpoint": "fake", "visibility": "public"}
    )
    ids["public_agent"] = public["agent_id"]
    schedule = await created(
        "/api/schedules",
        {
            "name": "matrix",
            "prompt": "hello",
            "conversation_id": ids["conversation"],
            "cron": "0 8 * * *",
        },
    )
    ids["schedule"] = schedule["id"]
    key = await make_key(client, user)
    ids["key"] = key.id

    world = World(
        user=user,
        ids=ids,
        key=key,
        account_sid=f"AC{secrets.token_hex(16)}",
        auth_token=secrets.token_hex(16),
        sender=sender,
    )
    channel = await created(
        "/api/channels",
        {
            "type": "twilio",
            "name": "Support line",
            "account_sid": world.account_sid,
            "auth_token": world.auth_token,
            "public_url": BASE_URL,
            "endpoint": "fake",
        },
    )
    ids["channel"] = channel["id"]
    inbound = await post_twilio(
        client, f"/api/channels/twilio/{ids['channel']}", inbound_form(world), world.auth_token
    )
    assert inbound.status_code == 200, inbound.text
    listed = await client.get("/api/convos", headers=user.headers)
    [thread] = [
        c["conversation_id"]
        for c in listed.json()["conversations"]
        if c["conversation_id"] != ids["conversation"]
    ]
    ids["thread"] = thread
    thread_messages = await settled(client, user, thread, titled=True)
    ids["channel_reply"] = next(
        m["message_id"] for m in thread_messages if m["role"] == "assistant"
    )
    # A share of the thread, not of `conversation`: the route matrix deletes that one (and
    # its shares with it) before it revokes the share.
    shared = await created(f"/api/convos/{thread}/shares", {"include_phone_numbers": True})
    ids["share"] = shared["share_id"]
    return world


@dataclass
class Matrix:
    client: httpx.AsyncClient
    backend: Backend
    a: World
    b: World
    routes: list[Route]


@pytest.fixture
async def matrix(client: httpx.AsyncClient, services: Services, clean_backend: Backend) -> Matrix:
    # Deliveries stay pending: an attempt in the background would change rows mid-check.
    await services.outbox.close()
    await services.scheduler.close()  # B's runs asked for stay pending, for the same reason
    await make_user(client)  # the first user is the admin; A and B are plain users
    alice, bob = await make_user(client), await make_user(client)
    a = await build_world(client, alice, "+14155552671")
    b = await build_world(client, bob, "+14155552672")
    # Logins left the last user's session cookie in the client, which the gateway takes
    # as "the request's user": every request here says who it is by header instead.
    client.cookies.clear()
    routes = list(app_routes(create_app(services=services)))
    return Matrix(client, clean_backend, a, b, routes)


# -- the matrix ---------------------------------------------------------------------------


async def snapshot(backend: Backend) -> dict[str, list[str]]:
    """Every row of every watched table: a write of any kind changes it."""
    rows: dict[str, list[str]] = {}
    async with backend.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name not in UNWATCHED_TABLES:
                columns = [c for c in table.columns if str(c) not in UNWATCHED_COLUMNS]
                result = await conn.execute(select(*columns))
                rows[table.name] = sorted(repr(tuple(row)) for row in result)
    return rows


async def counts(backend: Backend) -> dict[str, int]:
    return {
        name: n for name, n in (await row_counts(backend)).items() if name not in UNWATCHED_TABLES
    }


def missing_id(real: str) -> str:
    """An id of the same shape that names nothing: its last letter or digit changed."""
    for i in range(len(real) - 1, -1, -1):
        char = real[i]
        if char.isdigit():
            other = "1" if char == "0" else "0"
        elif char.isalpha():
            # a hex digit stays one: a UUID stays a UUID
            other = "b" if char.lower() == "a" else "a"
            other = other.upper() if char.isupper() else other
        else:
            continue
        return real[:i] + other + real[i + 1 :]
    raise AssertionError(f"cannot derive a missing id from {real!r}")


@dataclass
class Variant:
    """A probe with each of its path parameters taken from A's or B's objects."""

    route: Route
    probe: Probe
    owners: dict[str, Literal["a", "b"]]

    def label(self) -> str:
        owned = ", ".join(f"{p}=A's" if o == "a" else f"{p}=B's" for p, o in self.owners.items())
        kinds = f" {self.probe.kinds}" if self.probe.kinds else ""
        return f"{self.route[0]} {self.route[1]} [{owned}]{kinds}"


def variants(route: Route, probe: Probe) -> Iterator[Variant]:
    """Every mix of A's and B's objects in the path that names at least one of A's."""
    params = params_of(route[1])
    for owners in itertools.product("ab", repeat=len(params)):
        if "a" in owners:
            yield Variant(route, probe, dict(zip(params, owners, strict=True)))  # type: ignore[arg-type]


def kind_of(probe: Probe, param: str) -> str:
    return probe.kinds.get(param) or PARAM_KINDS[param]


async def send(
    m: Matrix, route: Route, probe: Probe, ids: dict[str, str], what: str
) -> httpx.Response:
    """B's request on the route, the path filled with `ids`."""
    method, template = route
    path = template.format(**ids)
    if probe.twilio is not None:
        form = inbound_form(m.b) if probe.twilio == "inbound" else status_form(m.b)
        return await within(what, post_twilio(m.client, path, form, m.b.auth_token))
    request = m.client.request(method, path, json=probe.body, headers=m.b.user.headers)
    return await within(what, request)


def normalised(response: httpx.Response, ids: dict[str, str]) -> tuple[int, str, str]:
    text = response.text
    # Every answer names its own request; that says nothing of anyone's objects.
    if request_id := response.headers.get("x-request-id"):
        text = text.replace(request_id, "<request_id>")
    for param, value in ids.items():
        text = text.replace(value, f"<{param}>")
    return response.status_code, response.headers.get("content-type", ""), text


async def check_variant(m: Matrix, variant: Variant) -> list[str]:
    """What went wrong when B sends this variant (nothing: an empty list)."""
    probe, route = variant.probe, variant.route
    worlds = {"a": m.a, "b": m.b}
    real = {p: worlds[o].ids[kind_of(probe, p)] for p, o in variant.owners.items()}
    absent = {p: missing_id(real[p]) if o == "a" else real[p] for p, o in variant.owners.items()}
    label = variant.label()
    before_counts, before = await counts(m.backend), await snapshot(m.backend)
    response = await send(m, route, probe, real, label)
    after_counts, after = await counts(m.backend), await snapshot(m.backend)
    problems: list[str] = []
    if after_counts != before_counts:
        grew = {t: (before_counts[t], n) for t, n in after_counts.items() if before_counts[t] != n}
        problems.append(f"{label}: rows written (table: before, after): {grew}")
    elif after != before:
        changed = sorted(t for t in after if after[t] != before[t])
        problems.append(f"{label}: rows changed in {changed}")

    if probe.twilio is not None and variant.owners.get("channel_id") == "a":
        # B cannot sign for A's channel. (An unknown channel is a 404 instead: ids are
        # random UUIDs, so the difference tells nothing to someone who does not hold one.)
        if response.status_code != 403 or "twilio_signature_invalid" not in response.text:
            problems.append(f"{label}: {response.status_code} {response.text[:300]}")
        return problems
    if probe.expect == "visible":
        if response.status_code != 200:
            problems.append(f"{label}: {response.status_code} {response.text[:300]}")
        return problems
    if probe.expect == "read_only":
        if response.status_code != 403 or "agent_read_only" not in response.text:
            problems.append(f"{label}: {response.status_code} {response.text[:300]}")
        return problems
    nothing = await send(m, route, probe, absent, f"{label} (missing id)")
    if response.status_code != 404:
        problems.append(f"{label}: {response.status_code} {response.text[:300]}")
    elif normalised(response, real) != normalised(nothing, absent):
        problems.append(
            f"{label}: differs from the answer for a missing id: "
            f"{response.text[:300]} vs {nothing.text[:300]}"
        )
    return problems


async def control(m: Matrix, route: Route, probe: Probe) -> list[str]:
    """B's request on B's own objects succeeds: the probe reaches the ownership check."""
    if probe.streams or probe.expect != "hidden":
        return []
    params = params_of(route[1])
    own = {p: m.b.ids[kind_of(probe, p)] for p in params}
    label = f"{route[0]} {route[1]} [B on B's own]"
    response = await send(m, route, probe, own, label)
    if not response.is_success:
        return [f"{label}: {response.status_code} {response.text[:300]}"]
    json_body = response.headers.get("content-type", "").startswith("application/json")
    # A regenerated reply: let it finish before anything is deleted.
    if response.content and json_body and response.json().get("generation_id"):
        await settled(m.client, m.b.user, m.b.ids["conversation"])
    if probe.twilio == "inbound":
        await settled(m.client, m.b.user, m.b.ids["thread"])
    return []


# Reads, then writes, then deletions: each control leaves B's objects for the next.
_ORDER = {"GET": 0, "POST": 1, "PATCH": 2, "DELETE": 3}


async def check_routes(matrix: Matrix) -> list[str]:
    """Every route with an id: B on A's objects finds nothing and writes nothing."""
    routes = [r for r in matrix.routes if r in CASES]
    problems: list[str] = []
    for route in routes:
        for probe in CASES[route]:
            for variant in variants(route, probe):
                problems += await check_variant(matrix, variant)
    for route in sorted(routes, key=lambda r: (_ORDER.get(r[0], 9), r[1])):
        for probe in CASES[route]:
            problems += await control(matrix, route, probe)
    return problems


# -- lists, API keys, and ids inside bodies ------------------------------------------------

# Lists a plain user may not read at all.
ADMIN_ONLY = frozenset(
    {
        "/api/admin/audit",
        "/api/admin/audit?outcome=accepted",
        "/api/admin/doctor",
        "/api/admin/users",
        "/api/admin/users?q=example",
        "/api/keys?all=true",
        "/api/keys/environment",
        "/api/usage?all=true",
    }
)


def foreign_ids(world: World) -> dict[str, str]:
    """A's ids B must never see (a public agent is everyone's to see, by design)."""
    return {k: v for k, v in world.ids.items() if k != "public_agent"}


async def check_lists(m: Matrix) -> list[str]:
    """Lists show B nothing of A's; the admin-only ones refuse a plain user."""
    problems: list[str] = []
    # A's key leaves an audit row, for A (and admins) to read.
    used = await m.client.post(
        f"/api/messages/{m.a.ids['conversation']}",
        json={"role": "external", "content": "from A's key", "respond": False},
        headers=m.a.key.headers,
    )
    assert used.status_code == 201, used.text
    for _ in range(int(WAIT_SECONDS / 0.05)):
        audit = await m.client.get(f"/api/keys/{m.a.ids['key']}/audit", headers=m.a.user.headers)
        if audit.json()["events"]:
            break
        await asyncio.sleep(0.05)
    else:
        problems.append("the audit row of A's request never showed")
    # B's own objects' sub-lists, which a missing scope would fill with A's.
    own = [
        f"/api/keys/{m.b.ids['key']}/audit",
        f"/api/messages/{m.b.ids['conversation']}",
        f"/api/webhooks/{m.b.ids['webhook']}/deliveries",
        f"/api/schedules/{m.b.ids['schedule']}/runs",
    ]
    listed = [r for r in m.routes if r in LISTS]
    assert listed, "no list route found"
    urls = [route[1] + query for route in listed for query in LISTS[route]]
    for url in urls + own:
        response = await m.client.get(url, headers=m.b.user.headers)
        if url in ADMIN_ONLY and response.status_code != 403:
            problems.append(f"{url}: a plain user got {response.status_code}")
        if response.status_code >= 500:
            problems.append(f"{url}: {response.status_code}")
        leaked = [k for k, v in foreign_ids(m.a).items() if v in response.text]
        if m.a.user.email in response.text:
            leaked.append("email")
        # A public agent names its owner; nothing else may.
        if m.a.user.id in response.text and url != "/api/agents":
            leaked.append("user id")
        if leaked:
            problems.append(f"{url}: shows A's {leaked}")
    # The same lists do show A's own objects to A: the check above is not vacuous.
    for url, kind in [
        ("/api/convos", "conversation"),
        ("/api/agents", "agent"),
        ("/api/keys", "key"),
        ("/api/webhooks", "webhook"),
        ("/api/channels", "channel"),
        ("/api/schedules", "schedule"),
        ("/api/search?q=matrix", "conversation"),
        ("/api/convos/export", "conversation"),
        ("/api/shares", "share"),
    ]:
        mine = await m.client.get(url, headers=m.a.user.headers)
        if m.a.ids[kind] not in mine.text:
            problems.append(f"{url}: A's own {kind} is not listed to A")
    return problems


async def unchanged_for_a(m: Matrix) -> dict[str, Any]:
    """Every conversation of A's with its messages, as A sees them."""
    seen: dict[str, Any] = {}
    for archived in ("false", "true"):
        listed = await m.client.get(f"/api/convos?archived={archived}", headers=m.a.user.headers)
        for conversation in listed.json()["conversations"]:
            cid = conversation["conversation_id"]
            messages = await m.client.get(f"/api/messages/{cid}", headers=m.a.user.headers)
            seen[cid] = (conversation, messages.json())
    return seen


async def check_api_keys(m: Matrix) -> list[str]:
    """B's API keys, whatever they may do, never post into A's conversations."""
    plain = await make_key(m.client, m.b.user)
    creating = await make_key(
        m.client,
        m.b.user,
        can_create_conversations=True,
        allowed_conversations=["*"],
        can_name_user=True,
    )
    # A thread of A's the way the gateway opens one: a system key, A's phone number.
    phone = "+14155559999"
    profile = await m.client.patch(
        "/api/user", json={"phone_number": phone}, headers=m.a.user.headers
    )
    assert profile.status_code == 200, profile.text
    threaded = {"metadata": {"source": "sms", "phoneNumber": phone}}
    opened = await m.client.post(
        "/api/external/messages",
        json={"role": "external", "content": "hello", "respond": False, **threaded},
        headers={"x-api-key": VERBATIM_KEY},
    )
    assert opened.status_code == 201, opened.text
    assert opened.json()["conversation_id"] in (await unchanged_for_a(m)), opened.text

    before = await unchanged_for_a(m)
    a_conversation = m.a.ids["conversation"]
    # (what, path, body, key, the problem code it must get; None: any refusal will do)
    attempts: list[tuple[str, str, dict[str, Any], TestKey, str | None]] = [
        # To any key but its owner's, a conversation is not found (and not said whose).
        ("plain key", f"/api/messages/{a_conversation}", {}, plain, "conversation_not_found"),
        (
            "creating key",
            f"/api/messages/{a_conversation}",
            {},
            creating,
            "conversation_not_found",
        ),
        ("naming A", f"/api/messages/{a_conversation}", {"user": m.a.user.email}, creating, None),
        (
            "naming A in B's conversation",
            f"/api/messages/{m.b.ids['conversation']}",
            {"user": m.a.user.email},
            creating,
            None,
        ),
        # B's own thread for this number may be fine; landing in A's is not.
        ("threaded to A's number", "/api/external/messages", threaded, plain, ""),
        ("threaded to A's number, creating", "/api/external/messages", threaded, creating, ""),
    ]
    problems: list[str] = []
    for what, path, extra, key, code in attempts:
        body = {"role": "external", "content": "written by B", "respond": False, **extra}
        response = await m.client.post(path, json=body, headers=key.headers)
        if code and (response.status_code != 404 or code not in response.text):
            problems.append(f"key: {what}: {response.status_code} {response.text[:300]}")
        if code is None and response.is_success:
            problems.append(f"key: {what}: accepted ({response.status_code})")
        if await unchanged_for_a(m) != before:
            problems.append(f"key: {what} ({path}): changed A's conversations")
            before = await unchanged_for_a(m)
    return problems


async def check_ids_in_bodies(m: Matrix) -> list[str]:
    """A's ids written into B's requests are refused like ids that name nothing."""
    plain = await make_key(m.client, m.b.user)
    channel = {
        "type": "twilio",
        "name": "B's line",
        "account_sid": m.b.account_sid,
        "auth_token": m.b.auth_token,
        "public_url": BASE_URL,
    }
    b_conversation = f"/api/messages/{m.b.ids['conversation']}"
    # (what, path, body with A's id or its missing twin, headers)
    cases: list[tuple[str, str, Callable[[str], dict[str, Any]], dict[str, str], str]] = [
        (
            "a person's reply to A's message",
            b_conversation,
            lambda i: {"text": "x", "respond": False, "parent_message_id": i},
            m.b.user.headers,
            "message",
        ),
        (
            "a key's reply to A's message",
            b_conversation,
            lambda i: {"role": "external", "content": "x", "parent_message_id": i},
            plain.headers,
            "message",
        ),
        (
            "a webhook for A's key",
            "/api/webhooks",
            lambda i: {"url": HOOK_URL, "api_key_id": i},
            m.b.user.headers,
            "key",
        ),
        (
            "a schedule posting into A's conversation",
            "/api/schedules",
            lambda i: {"name": "x", "prompt": "x", "cron": "0 8 * * *", "conversation_id": i},
            m.b.user.headers,
            "conversation",
        ),
        (
            "a schedule run by A's private agent",
            "/api/schedules",
            lambda i: {"name": "x", "prompt": "x", "cron": "0 8 * * *", "agent_id": i},
            m.b.user.headers,
            "agent",
        ),
        (
            "a channel answered by A's private agent",
            "/api/channels",
            lambda i: {**channel, "agent_id": i},
            m.b.user.headers,
            "agent",
        ),
    ]
    problems: list[str] = []
    for what, path, body, headers, kind in cases:
        real = m.a.ids[kind]
        absent = missing_id(real)
        before = await counts(m.backend), await snapshot(m.backend)
        response = await m.client.post(path, json=body(real), headers=headers)
        nothing = await m.client.post(path, json=body(absent), headers=headers)
        after = await counts(m.backend), await snapshot(m.backend)
        if response.is_success or after != before:
            problems.append(f"body: {what}: accepted or written ({response.status_code})")
        elif normalised(response, {"id": real}) != normalised(nothing, {"id": absent}):
            problems.append(f"body: {what}: {response.text[:300]} vs {nothing.text[:300]}")
    # Naming another person as a channel's owner says nothing of whether they exist.
    owners = []
    for owner in (m.a.user.email, "nobody@example.com"):
        response = await m.client.post(
            "/api/channels", json={**channel, "owner": owner}, headers=m.b.user.headers
        )
        owners.append(normalised(response, {"owner": owner}))
    if owners[0] != owners[1] or owners[0][0] != 403:
        problems.append(f"body: a channel for another user: {owners[0]} vs {owners[1]}")
    return problems


async def test_another_users_objects_are_out_of_reach(matrix: Matrix) -> None:
    """One world per backend, built once (it takes most of the time), every check on it.

    The route matrix comes last: its controls change and delete B's objects.
    """
    problems = await check_lists(matrix)
    problems += await check_ids_in_bodies(matrix)
    problems += await check_api_keys(matrix)
    problems += await check_routes(matrix)
    assert not problems, "\n".join(problems)
