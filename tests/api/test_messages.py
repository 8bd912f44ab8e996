"""Messages: typed content, flattened text, parent links, and refusals that write nothing."""

from __future__ import annotations

import httpx
import pytest

from relaychat.services import Services
from tests.support.backends import Backend, row_counts
from tests.support.factories import make_conversation, make_user, post_message


async def test_messages_form_a_chain_by_default(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    first = await post_message(client, user, cid, text="one")
    second = await post_message(client, user, cid, content=[{"type": "text", "text": "two"}])
    third = await post_message(client, user, cid, content="three")
    assert first["parent_message_id"] is None
    assert second["parent_message_id"] == first["message_id"]
    assert third["parent_message_id"] == second["message_id"]

    listed = (await client.get(f"/api/messages/{cid}", headers=user.headers)).json()["messages"]
    assert [m["message_id"] for m in listed] == [m["message_id"] for m in (first, second, third)]
    for message in listed:
        assert {
            "message_id",
            "conversation_id",
            "parent_message_id",
            "role",
            "sender",
            "content",
            "text",
            "status",
            "metadata",
            "created_at",
        } <= message.keys()
        assert (message["role"], message["status"]) == ("user", "complete")


async def test_explicit_parent_makes_a_branch(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    root = await post_message(client, user, cid, text="root")
    await post_message(client, user, cid, text="child a")
    sibling = await post_message(
        client, user, cid, text="child b", parent_message_id=root["message_id"]
    )
    assert sibling["parent_message_id"] == root["message_id"]


async def test_parts_are_stored_typed_with_flattened_text(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    parts = [
        {"type": "text", "text": "look at this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "text", "text": "and this"},
    ]
    message = await post_message(client, user, cid, content=parts, metadata={"source": "web"})
    assert message["content"] == parts
    assert message["text"] == "look at this\n\nand this"
    assert message["metadata"] == {"source": "web"}


async def test_parent_from_another_conversation_is_refused(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    user = await make_user(client)
    a = (await make_conversation(client, user))["conversation_id"]
    b = (await make_conversation(client, user))["conversation_id"]
    foreign = await post_message(client, user, a, text="in a")
    before = await row_counts(clean_backend)
    for parent in (foreign["message_id"], "no-such-message"):
        response = await client.post(
            f"/api/messages/{b}",
            json={"text": "x", "parent_message_id": parent},
            headers=user.headers,
        )
        assert response.status_code == 422
        assert response.json()["code"] == "parent_not_in_conversation"
    assert await row_counts(clean_backend) == before


BAD_BODIES = [
    pytest.param({"text": 5}, "validation_error", "text", id="wrong-type"),
    pytest.param({}, "validation_error", "body", id="neither-text-nor-content"),
    pytest.param({"text": "a", "content": "b"}, "validation_error", "body", id="both"),
    pytest.param(
        {"content": [{"type": "video"}]}, "validation_error", "content", id="unknown-part"
    ),
    pytest.param(
        {"content": [{"type": "text"}]}, "validation_error", "content", id="part-missing-text"
    ),
    pytest.param({"text": ""}, "validation_error", "content", id="empty"),
    pytest.param({"text": "hi", "colour": "red"}, "validation_error", "colour", id="unknown-field"),
    pytest.param({"text": "hi", "role": "assistant"}, "validation_error", "role", id="role"),
]


@pytest.mark.parametrize(("body", "code", "field"), BAD_BODIES)
async def test_bad_message_bodies_name_the_field_and_write_nothing(
    client: httpx.AsyncClient,
    clean_backend: Backend,
    body: dict[str, object],
    code: str,
    field: str,
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    before = await row_counts(clean_backend)
    response = await client.post(f"/api/messages/{cid}", json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == code
    assert problem["field"].startswith(field)
    assert await row_counts(clean_backend) == before


async def test_malformed_json_is_422_and_writes_nothing(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    before = await row_counts(clean_backend)
    response = await client.post(
        f"/api/messages/{cid}",
        content=b'{"text": "unterminated',
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "malformed_json"
    assert await row_counts(clean_backend) == before


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversize_body_is_413_and_writes_nothing(
    client: httpx.AsyncClient, clean_backend: Backend, services: Services, chunked: bool
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    before = await row_counts(clean_backend)
    payload = b'{"text": "' + b"x" * (services.settings.max_body_bytes + 1) + b'"}'

    async def stream() -> object:
        for start in range(0, len(payload), 65536):
            yield payload[start : start + 65536]

    response = await client.post(
        f"/api/messages/{cid}",
        content=stream() if chunked else payload,  # type: ignore[arg-type]
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "payload_too_large"
    assert await row_counts(clean_backend) == before


async def test_unknown_conversation_is_404(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    listed = await client.get("/api/messages/nope", headers=user.headers)
    posted = await client.post("/api/messages/nope", json={"text": "x"}, headers=user.headers)
    assert listed.status_code == posted.status_code == 404
    assert listed.json()["code"] == posted.json()["code"] == "conversation_not_found"


async def test_unknown_route_and_method_are_problem_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/nothing-here")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    wrong = await client.put("/api/convos")
    assert (wrong.status_code, wrong.json()["code"]) == (405, "method_not_allowed")
