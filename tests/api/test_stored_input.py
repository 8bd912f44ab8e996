"""What may be stored: bounded metadata, text both backends keep, and nothing unrenderable.

Every refusal here is the same 4xx on SQLite and PostgreSQL, and writes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from relaychat.domain.limits import (
    METADATA_MAX_BYTES,
    METADATA_MAX_DEPTH,
    METADATA_MAX_KEY_LENGTH,
    METADATA_MAX_KEYS,
)
from tests.support.backends import Backend, row_counts
from tests.support.factories import TestUser, make_conversation, make_user, post_message
from tests.support.settings import VERBATIM_KEY

SYSTEM = {"x-api-key": VERBATIM_KEY}


async def stored_rows(backend: Backend) -> dict[str, int]:
    """Rows per table, less the audit (a refused external request is audited, by design)."""
    return {k: v for k, v in (await row_counts(backend)).items() if k != "audit_events"}


def nested(depth: int) -> dict[str, Any]:
    """`{"a": {"a": ... {}}}` with `depth` objects in all."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# Each is out of bounds in exactly one way.
OVERSIZED_METADATA = {
    "depth": nested(METADATA_MAX_DEPTH + 1),
    "keys": {f"k{i}": i for i in range(METADATA_MAX_KEYS + 1)},
    "key_length": {"k" * (METADATA_MAX_KEY_LENGTH + 1): 1},
    "size": {"note": "x" * METADATA_MAX_BYTES},
}


async def _sent_by_all_doors(
    client: httpx.AsyncClient, user: TestUser, cid: str, body: dict[str, Any]
) -> list[httpx.Response]:
    """The same message from a person, an external system by id and one by sender."""
    external = {k: v for k, v in body.items() if k != "text"} | {
        "role": "external",
        "content": body.get("text", body.get("content")),
    }
    threaded = {
        **external,
        "metadata": {"phoneNumber": "+14155550100", **external.get("metadata", {})},
    }
    return [
        await post_json(client, f"/api/messages/{cid}", body, user.headers),
        await post_json(client, f"/api/messages/{cid}", external, SYSTEM),
        await post_json(client, "/api/external/messages", {**threaded, "user": user.id}, SYSTEM),
    ]


async def post_json(
    client: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    """POST `body` as ASCII JSON: `\\ud800` and `\\u0000` travel as escapes, as any client
    may send them (httpx's own `json=` cannot encode a lone surrogate)."""
    return await client.post(
        url, content=json.dumps(body), headers={**headers, "Content-Type": "application/json"}
    )


@pytest.mark.parametrize("bound", list(OVERSIZED_METADATA))
async def test_metadata_out_of_bounds_is_refused_at_every_door(
    client: httpx.AsyncClient, clean_backend: Backend, bound: str
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    before = await stored_rows(clean_backend)
    body = {"text": "hi", "metadata": OVERSIZED_METADATA[bound]}
    for response in await _sent_by_all_doors(client, user, cid, body):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "validation_error"
        assert problem["field"] == "metadata"
    assert await stored_rows(clean_backend) == before


async def test_metadata_within_bounds_is_stored_and_renders(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    metadata = {"deep": nested(METADATA_MAX_DEPTH - 1), "k" * METADATA_MAX_KEY_LENGTH: 1}
    message = await post_message(client, user, cid, text="hi", metadata=metadata)
    assert message["metadata"] == metadata
    listed = await client.get(f"/api/messages/{cid}", headers=user.headers)
    assert listed.status_code == 200
    assert listed.json()["messages"][0]["metadata"] == metadata


@pytest.mark.parametrize("depth", [40, 300])
async def test_deep_json_is_refused_before_anything_is_stored(
    client: httpx.AsyncClient, clean_backend: Backend, depth: int
) -> None:
    """Nesting like this was committed and then broke every rendering of the conversation,
    with its reply left `streaming` and its webhook queued."""
    user = await make_user(client)
    convo = await make_conversation(client, user, endpoint="fake", model="fake-model")
    cid = convo["conversation_id"]
    before = await stored_rows(clean_backend)
    for response in await _sent_by_all_doors(
        client, user, cid, {"text": "hi", "metadata": {"x": nested(depth)}}
    ):
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "malformed_json"
    assert await stored_rows(clean_backend) == before
    listed = await client.get(f"/api/messages/{cid}", headers=user.headers)
    assert (listed.status_code, listed.json()["messages"]) == (200, [])


async def test_json_deeper_than_python_recursion_is_malformed_json(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    body = '{"text": "hi", "metadata": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"
    response = await client.post(
        f"/api/messages/{cid}",
        content=body,
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert (response.status_code, response.json()["code"]) == (422, "malformed_json")


UNSTORABLE = {"nul": "a\x00b", "lone_surrogate": "a\ud800b"}


@pytest.mark.parametrize("kind", list(UNSTORABLE))
@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("text", "text"),
        ("content", "content[0].text"),
        ("metadata", "metadata.note"),
        ("metadata_key", "metadata.a"),
    ],
)
async def test_unstorable_text_is_the_same_422_on_both_backends(
    client: httpx.AsyncClient, clean_backend: Backend, kind: str, where: str, field: str
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    bad = UNSTORABLE[kind]
    bodies: dict[str, dict[str, Any]] = {
        "text": {"text": bad},
        "content": {"content": [{"type": "text", "text": bad}]},
        "metadata": {"text": "hi", "metadata": {"note": bad}},
        "metadata_key": {"text": "hi", "metadata": {f"a{bad}": 1}},
    }
    body = bodies[where]
    before = await stored_rows(clean_backend)
    person, *external = await _sent_by_all_doors(client, user, cid, body)
    for response in (person, *external):
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation_error"
    # Each names the spot in its own body (external systems send `content`, not `text`).
    assert person.json()["field"].startswith(field)
    for response in external:
        assert response.json()["field"].startswith("content" if where == "text" else field)
    assert await stored_rows(clean_backend) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/convos/%00",
        "/api/convos/a%00b/events",
        "/api/messages/%00",
        "/api/agents/%00",
        "/api/keys/%00",
        "/api/webhooks/%00",
    ],
)
async def test_nul_in_a_path_id_is_404_on_both_backends(
    client: httpx.AsyncClient, path: str
) -> None:
    user = await make_user(client)
    response = await client.get(path, headers=user.headers)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


async def test_nul_in_a_query_parameter_is_422(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    response = await client.get("/api/convos", params={"cursor": "a\x00"}, headers=user.headers)
    assert (response.status_code, response.json()["field"]) == (422, "cursor")


async def test_nul_in_a_json_body_anywhere_is_refused(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    """Not only messages: a conversation's title, an agent's name."""
    user = await make_user(client)
    before = await stored_rows(clean_backend)
    title = await post_json(client, "/api/convos", {"title": "a\x00"}, user.headers)
    agent = await post_json(
        client, "/api/agents", {"name": "\ud800", "endpoint": "fake"}, user.headers
    )
    assert (title.status_code, title.json()["field"]) == (422, "title")
    assert (agent.status_code, agent.json()["field"]) == (422, "name")
    assert await stored_rows(clean_backend) == before


async def test_agent_visibility_null_is_422_not_500(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    created = await client.post(
        "/api/agents", json={"name": "helper", "endpoint": "fake"}, headers=user.headers
    )
    assert created.status_code == 201, created.text
    agent_id = created.json()["agent_id"]
    for field in ("visibility", "mcp_servers", "name"):
        response = await client.patch(
            f"/api/agents/{agent_id}", json={field: None}, headers=user.headers
        )
        assert (response.status_code, response.json()["field"]) == (422, field), response.text
    after = await client.get(f"/api/agents/{agent_id}", headers=user.headers)
    assert after.json()["visibility"] == "private"
