"""Registering webhook endpoints: the secret once, events checked, targets vetted, owners only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from relaychat.crypto import SecretUnreadable
from relaychat.devtools.fake_llm import FakeLLM
from relaychat.services import Services
from relaychat.settings import Settings
from tests.support.backends import Backend
from tests.support.factories import make_key, make_user
from tests.support.settings import webhook_settings

pytestmark = pytest.mark.usefixtures("services")


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    """Receivers on loopback allowed, as in every webhook test."""
    return webhook_settings(backend, tmp_path, fake_llm)


async def test_create_shows_the_secret_once(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    created = await client.post(
        "/api/webhooks",
        json={"url": "https://example.com/hook", "events": ["message.completed"]},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    hook = body["webhook"]
    assert hook["events"] == ["message.completed"]
    assert hook["enabled"] is True and hook["api_key_id"] is None

    listed = await client.get("/api/webhooks", headers=user.headers)
    assert [h["id"] for h in listed.json()["webhooks"]] == [hook["id"]]
    assert body["secret"] not in listed.text
    one = await client.get(f"/api/webhooks/{hook['id']}", headers=user.headers)
    assert one.json() == hook


async def test_all_events_by_default(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    created = await client.post(
        "/api/webhooks", json={"url": "https://example.com/h"}, headers=user.headers
    )
    assert sorted(created.json()["webhook"]["events"]) == [
        "conversation.created",
        "message.completed",
        "message.created",
        "message.failed",
    ]


async def test_event_types_lists_every_event_an_endpoint_may_take(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    listed = await client.get("/api/webhooks/event-types", headers=user.headers)
    assert listed.status_code == 200, listed.text
    entries = listed.json()["event_types"]
    assert [e["type"] for e in entries] == [
        "message.created",
        "message.completed",
        "message.failed",
        "conversation.created",
    ]
    assert all(e["description"] for e in entries)
    # What it lists is what registering accepts, and all of it is the default.
    created = await client.post(
        "/api/webhooks",
        json={"url": "https://example.com/h", "events": [e["type"] for e in entries]},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    assert (await client.get("/api/webhooks/event-types")).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://example.com/h", "events": ["message.exploded"]}, "events"),
        ({"url": "https://example.com/h", "events": []}, "events"),
        ({"url": "ftp://example.com/h"}, "url"),
        ({"url": "https://user:pw@example.com/h"}, "url"),
    ],
)
async def test_bad_input_is_422_and_stores_nothing(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    user = await make_user(client)
    response = await client.post("/api/webhooks", json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text
    assert (await client.get("/api/webhooks", headers=user.headers)).json()["webhooks"] == []


async def test_private_targets_refused_unless_allowed(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    services.settings.webhook_allow_private_networks = False
    for url in ("http://127.0.0.1:9/h", "http://169.254.169.254/latest", "http://localhost/h"):
        refused = await client.post("/api/webhooks", json={"url": url}, headers=user.headers)
        assert refused.status_code == 422, url
        assert refused.json()["code"] == "webhook_target_refused"
    services.settings.webhook_allow_private_networks = True
    allowed = await client.post(
        "/api/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=user.headers
    )
    assert allowed.status_code == 201


async def test_key_endpoint_must_be_your_key(client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(client), await make_user(client)
    bobs_key = await make_key(client, bob)
    refused = await client.post(
        "/api/webhooks",
        json={"url": "https://example.com/h", "api_key_id": bobs_key.id},
        headers=alice.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "validation_error"
    alices_key = await make_key(client, alice)
    ok = await client.post(
        "/api/webhooks",
        json={"url": "https://example.com/h", "api_key_id": alices_key.id},
        headers=alice.headers,
    )
    assert ok.status_code == 201
    assert ok.json()["webhook"]["api_key_id"] == alices_key.id


async def test_other_users_endpoints_are_not_found(client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(client), await make_user(client)
    hook = (
        await client.post(
            "/api/webhooks", json={"url": "https://example.com/h"}, headers=alice.headers
        )
    ).json()["webhook"]
    base = f"/api/webhooks/{hook['id']}"
    for method, path, body in [
        ("GET", base, None),
        ("PATCH", base, {"enabled": False}),
        ("DELETE", base, None),
        ("GET", f"{base}/deliveries", None),
        ("POST", f"{base}/deliveries/msg_x/redeliver", None),
    ]:
        response = await client.request(method, path, json=body, headers=bob.headers)
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == "webhook_not_found"
    assert (await client.get(base, headers=alice.headers)).json()["enabled"] is True


async def test_patch_and_delete(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    hook = (
        await client.post(
            "/api/webhooks", json={"url": "https://example.com/h"}, headers=user.headers
        )
    ).json()["webhook"]
    base = f"/api/webhooks/{hook['id']}"
    disabled = await client.patch(base, json={"enabled": False}, headers=user.headers)
    assert disabled.json()["enabled"] is False
    assert disabled.json()["disabled_reason"] == "disabled by its owner"
    changed = await client.patch(
        base,
        json={"enabled": True, "url": "https://example.org/x", "events": ["message.failed"]},
        headers=user.headers,
    )
    assert changed.status_code == 200
    assert changed.json()["url"] == "https://example.org/x"
    assert changed.json()["events"] == ["message.failed"]
    assert changed.json()["enabled"] is True and changed.json()["disabled_reason"] is None
    bad = await client.patch(base, json={"url": "gopher://example.org/"}, headers=user.headers)
    assert bad.status_code == 422
    assert (await client.delete(base, headers=user.headers)).status_code == 204
    assert (await client.get(base, headers=user.headers)).status_code == 404


async def test_requires_a_user(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/webhooks")).status_code == 401


async def test_a_server_with_another_encryption_key_refuses_to_start(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    created = await client.post(
        "/api/webhooks", json={"url": "https://example.com/h"}, headers=user.headers
    )
    assert created.status_code == 201
    other = services.settings.model_copy(update={"encryption_key": Fernet.generate_key().decode()})
    stranger = Services.build(other, engine=services.engine)
    with pytest.raises(SecretUnreadable, match="same ENCRYPTION_KEY"):
        await stranger.start()
    await stranger.close()
