"""Refusals speak the API's language: its own field names, what to send, a stable code."""

from __future__ import annotations

import httpx
import pytest

from tests.support.backends import Backend, row_counts
from tests.support.factories import make_conversation, make_user
from tests.support.settings import VERBATIM_KEY

SYSTEM = {"x-api-key": VERBATIM_KEY}


async def stored_rows(backend: Backend) -> dict[str, int]:
    """Rows per table, less the audit (a refused external request is audited, by design)."""
    return {k: v for k, v in (await row_counts(backend)).items() if k != "audit_events"}


async def _conversation(client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    return user.headers, cid


async def test_an_empty_body_says_what_to_send(client: httpx.AsyncClient) -> None:
    headers, cid = await _conversation(client)
    problem = (await client.post(f"/api/messages/{cid}", json={}, headers=headers)).json()
    assert problem["code"] == "validation_error"
    assert problem["field"] == "body"
    assert "`text`" in problem["detail"] and "`content`" in problem["detail"]
    assert "exactly one" not in problem["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": [{"type": "bad"}]}, "content[0].type"),
        ({"content": [{"type": "text"}]}, "content[0].text"),
        (
            {"content": [{"type": "text", "text": "x"}, {"type": "image_url"}]},
            "content[1].image_url",
        ),
        ({"text": 5}, "text"),
        ({"text": "x", "respond": "perhaps"}, "respond"),
        ({"text": "x", "surprise": 1}, "surprise"),
    ],
)
async def test_fields_are_named_as_the_api_names_them(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    headers, cid = await _conversation(client)
    problem = (await client.post(f"/api/messages/{cid}", json=body, headers=headers)).json()
    assert problem["code"] == "validation_error"
    assert [e["field"] for e in problem["errors"]] == [field]
    assert problem["field"] == field
    # Nothing of FastAPI's or pydantic's inner names.
    for internal in ("body.", "tagged-union", "list[", ".str", "Value error"):
        assert internal not in problem["detail"], problem["detail"]


async def test_external_fields_are_named_too(client: httpx.AsyncClient) -> None:
    _, cid = await _conversation(client)
    problem = (
        await client.post(
            f"/api/messages/{cid}",
            json={"role": "external", "content": [{"type": "nope"}], "user": 5},
            headers=SYSTEM,
        )
    ).json()
    assert sorted(e["field"] for e in problem["errors"]) == ["content[0].type", "user"]


async def test_a_body_not_sent_as_json_is_415(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    headers, cid = await _conversation(client)
    before = await stored_rows(clean_backend)
    for content_type in ("text/plain", None):
        sent = {**headers, "Content-Type": content_type} if content_type else headers
        response = await client.post(f"/api/messages/{cid}", content="hello", headers=sent)
        assert response.status_code == 415, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unsupported_media_type"
        assert "application/json" in response.json()["detail"]
    assert await stored_rows(clean_backend) == before


async def test_an_api_key_without_the_external_role_gets_a_hint(client: httpx.AsyncClient) -> None:
    _, cid = await _conversation(client)
    response = await client.post(f"/api/messages/{cid}", json={"content": "hello"}, headers=SYSTEM)
    assert response.status_code == 401
    assert '"role": "external"' in response.json()["detail"]


@pytest.mark.parametrize("blank", ["", "   ", "\n\t "])
async def test_whitespace_only_text_is_refused(
    client: httpx.AsyncClient, clean_backend: Backend, blank: str
) -> None:
    headers, cid = await _conversation(client)
    before = await stored_rows(clean_backend)
    bodies = [
        (f"/api/messages/{cid}", {"text": blank}, headers),
        (f"/api/messages/{cid}", {"content": [{"type": "text", "text": blank}]}, headers),
        (f"/api/messages/{cid}", {"role": "external", "content": blank}, SYSTEM),
    ]
    for url, body, sent in bodies:
        response = await client.post(url, json=body, headers=sent)
        assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert await stored_rows(clean_backend) == before


@pytest.mark.parametrize(
    "raw",
    [
        b'{"text": "caf\xe9"}',
        b'{"text": "\xff\xfe"}',
        b'{"text": "x", "metadata": ' + b"[" * 100 + b"]" * 100 + b"}",
    ],
    ids=["latin-1", "invalid-bytes", "over-deep"],
)
async def test_invalid_utf8_or_over_deep_json_is_malformed_json(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    headers, cid = await _conversation(client)
    for sent in (headers, SYSTEM):
        response = await client.post(
            f"/api/messages/{cid}",
            content=raw,
            headers={**sent, "Content-Type": "application/json"},
        )
        assert (response.status_code, response.json()["code"]) == (422, "malformed_json")


@pytest.mark.parametrize("key", ["", "   ", "k" * 256])
async def test_an_empty_or_over_long_idempotency_key_has_its_own_code(
    client: httpx.AsyncClient, clean_backend: Backend, key: str
) -> None:
    _, cid = await _conversation(client)
    before = await stored_rows(clean_backend)
    response = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "hi"},
        headers={**SYSTEM, "Idempotency-Key": key},
    )
    assert response.status_code == 422
    problem = response.json()
    assert (problem["code"], problem["field"]) == ("idempotency_key_invalid", "Idempotency-Key")
    assert await stored_rows(clean_backend) == before
