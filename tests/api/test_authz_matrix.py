"""The authorization matrix: user B on user A's objects, on every route that takes an id.

The routes come from the app itself, so a route added without a case in `CASES` fails
`test_every_route_has_a_case`. For every case, B's request naming A's object must get
the very answer B gets for an id that names nothing (404, the same body: nothing about A's
object is revealed) and must write nothing; the same request on B's own object must then
succeed, which proves the case reaches the ownership check and not a validation error.
Lists must show B nothing of A's, and B's API keys must not reach A's conversations.
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
from fastapi.routing import iter_route_contexts
from sqlalchemy import select
from starlette.routing import Mount
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from relaychat.app import create_app
from relaychat.devtools.fake_llm import FakeLLM
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.models import Base
from tests.backends import Backend, row_counts
from tests.conftest import TEST_JWT_SECRET, llm_settings
from tests.factories import TestUser, make_key, make_user

Route = tuple[str, str]  # (method, path template as the app declares it)

# Written by the audit writer in the background, for refused requests too: that a refusal
# is recorded is the point of it, so these rows are not a write by B.
UNWATCHED_TABLES = frozenset({"audit_events"})
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
    ("GET", "/api/convos/{conversation_id}/events"): (Probe(streams=True),),
    ("GET", "/api/messages/{conversation_id}"): HIDDEN,
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
    ("PATCH", "/api/channels/{channel_id}"): (Probe(body={"name": "renamed by B"}),),
    ("DELETE", "/api/channels/{channel_id}"): HIDDEN,
    ("POST", "/api/channels/twilio/{channel_id}"): (Probe(twilio="inbound"),),
    ("POST", "/api/channels/twilio/{channel_id}/status/{message_id}"): (
        Probe(kinds={"message_id": "channel_reply"}, twilio="status"),
    ),
}

# GET routes without an id: each one either lists what the caller owns (checked by
# `test_lists_show_nothing_of_another_user`) or says why it holds nobody's objects.
LISTS: dict[Route, tuple[str, ...]] = {
    ("GET", "/api/convos"): ("", "?archived=true"),
    ("GET", "/api/agents"): ("",),
    ("GET", "/api/keys"): ("", "?all=true"),
    ("GET", "/api/webhooks"): ("",),
    ("GET", "/api/channels"): ("", "?all=true"),
    ("GET", "/api/admin/audit"): ("", "?outcome=accepted"),
    ("GET", "/api/user"): ("",),
}
NOT_LISTS: dict[Route, str] = {
    ("GET", "/api/events"): "the caller's own event stream (realtime tests check its scope)",
    ("GET", "/api/endpoints"): "the server's configured LLM endpoints",
    ("GET", "/api/agents/tools"): "the server's tool catalogue",
}
# Mounted ASGI apps, which the enumeration cannot see into.
MOUNTS: dict[str, str] = {}


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


def test_every_route_has_a_case(tmp_path: Path) -> None:
    """A route added without a case here (or a case whose route is gone) fails."""
    settings = Settings(jwt_secret=TEST_JWT_SECRET, data_dir=tmp_path)
    routes = set(app_routes(create_app(settings)))
    with_id = {r for r in routes if has_id(r) and r[0] != "MOUNT"}
    missing = sorted(with_id - set(CASES))
    assert not missing, (
        "routes that take an id have no case in the authorization matrix "
        f"(add them to CASES in {__name__}): {missing}"
    )
    assert not sorted(set(CASES) - with_id), "CASES name routes the app no longer has"
    lists = {r for r in routes if r[0] == "GET" and r[1].startswith("/api/") and not has_id(r)}
    unclassified = sorted(lists - set(LISTS) - set(NOT_LISTS))
    assert not unclassified, (
        f"GET routes without an id must be in LISTS (checked for leaks) or NOT_LISTS: "
        f"{unclassified}"
    )
    assert not sorted((set(LISTS) | set(NOT_LISTS)) - routes), "stale LISTS/NOT_LISTS entries"
    mounts = sorted(path for method, path in routes if method == "MOUNT" and path not in MOUNTS)
    assert not mounts, f"mounted apps need an entry in MOUNTS saying who may reach what: {mounts}"
    for route, probes in CASES.items():
        for probe in probes:
            unknown = set(probe.kinds) - set(params_of(route[1]))
            assert not unknown, f"{route}: the probe names parameters the path lacks: {unknown}"


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
    ids["key"] = (await make_key(client, user)).id

    world = World(
        user=user,
        ids=ids,
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
    ids["channel_reply"] = next(m["message_id"] for m in thread_messages if m["role"] == "assistant")
    return world


@dataclass
class Matrix:
    client: httpx.AsyncClient
    backend: Backend
    a: World
    b: World
    routes: list[Route]


@pytest.fixture
async def matrix(
    client: httpx.AsyncClient, services: Services, clean_backend: Backend
) -> Matrix:
    # Deliveries stay pending: an attempt in the background would change rows mid-check.
    await services.outbox.close()
    await make_user(client)  # the first user is the admin; A and B are plain users
    alice, bob = await make_user(client), await make_user(client)
    a = await build_world(client, alice, "+14155552671")
    b = await build_world(client, bob, "+14155552672")
    routes = list(app_routes(create_app(services=services)))
    return Matrix(client, clean_backend, a, b, routes)


# -- the matrix ---------------------------------------------------------------------------


async def snapshot(backend: Backend) -> dict[str, list[str]]:
    """Every row of every watched table: a write of any kind changes it."""
    rows: dict[str, list[str]] = {}
    async with backend.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name not in UNWATCHED_TABLES:
                result = await conn.execute(select(table))
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
    for param, value in ids.items():
        text = text.replace(value, f"<{param}>")
    return response.status_code, response.headers.get("content-type", ""), text


async def check_variant(m: Matrix, variant: Variant) -> list[str]:
    """What went wrong when B sends this variant (nothing: an empty list)."""
    probe, route = variant.probe, variant.route
    worlds = {"a": m.a, "b": m.b}
    real = {p: worlds[o].ids[kind_of(probe, p)] for p, o in variant.owners.items()}
    absent = {
        p: missing_id(real[p]) if o == "a" else real[p] for p, o in variant.owners.items()
    }
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
    if response.content and json_body and response.json().get("generation_id"):  # a regenerated reply: let it finish before anything is deleted
        await settled(m.client, m.b.user, m.b.ids["conversation"])
    if probe.twilio == "inbound":
        await settled(m.client, m.b.user, m.b.ids["thread"])
    return []


# Reads, then writes, then deletions: each control leaves B's objects for the next.
_ORDER = {"GET": 0, "POST": 1, "PATCH": 2, "DELETE": 3}


async def test_another_users_objects_are_not_found_and_not_written(matrix: Matrix) -> None:
    routes = [r for r in matrix.routes if r in CASES]
    problems: list[str] = []
    for route in routes:
        for probe in CASES[route]:
            for variant in variants(route, probe):
                problems += await check_variant(matrix, variant)
    for route in sorted(routes, key=lambda r: (_ORDER.get(r[0], 9), r[1])):
        for probe in CASES[route]:
            problems += await control(matrix, route, probe)
    assert not problems, "\n".join(problems)
