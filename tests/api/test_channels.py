"""Channel management: the token never comes back, channels are their manager's, rules hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.devtools.fake_twilio import FakeTwilio
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.models import Channel
from tests.support.backends import Backend
from tests.support.factories import make_user
from tests.support.settings import twilio_settings
from tests.support.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    fixture_form,
    make_channel,
    post_signed,
)


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    """Replies retried a moment apart, as in every Twilio test."""
    return twilio_settings(backend, tmp_path, fake_llm)


async def test_create_never_returns_the_token_and_stores_it_encrypted(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, services: Services
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    assert AUTH_TOKEN not in str(channel)
    assert (channel["auth_token_set"], channel["auth_token_env"]) == (True, None)
    assert channel["webhook_url"] == f"https://testserver/api/channels/twilio/{channel['id']}"
    assert (channel["owner_id"], channel["manager_id"]) == (admin.id, admin.id)
    for response in (
        await client.get(f"/api/channels/{channel['id']}", headers=admin.headers),
        await client.get("/api/channels", headers=admin.headers),
    ):
        assert response.status_code == 200
        assert AUTH_TOKEN not in response.text
    async with services.sessionmaker() as session:
        row = await session.scalar(select(Channel).where(Channel.id == channel["id"]))
    assert row is not None and row.secret_encrypted is not None
    assert AUTH_TOKEN not in row.secret_encrypted
    assert services.secrets.decrypt(row.secret_encrypted) == AUTH_TOKEN


async def test_another_users_channel_is_not_found(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    await make_user(client)  # the admin
    ann = await make_user(client)
    bob = await make_user(client)
    channel = await make_channel(client, ann, fake_twilio, api_base_url=None)
    url = f"/api/channels/{channel['id']}"
    assert (await client.get(url, headers=bob.headers)).json()["code"] == "channel_not_found"
    patched = await client.patch(url, json={"name": "mine"}, headers=bob.headers)
    assert patched.status_code == 404
    assert (await client.delete(url, headers=bob.headers)).status_code == 404
    assert (await client.get("/api/channels", headers=bob.headers)).json() == {"channels": []}
    assert (await client.get(url, headers=ann.headers)).status_code == 200


async def test_admin_sees_every_channel_with_all(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    ann = await make_user(client)
    channel = await make_channel(client, ann, fake_twilio, api_base_url=None)
    listed = await client.get("/api/channels?all=true", headers=admin.headers)
    assert [c["id"] for c in listed.json()["channels"]] == [channel["id"]]
    own = await client.get("/api/channels", headers=admin.headers)
    assert own.json()["channels"] == []


@pytest.mark.parametrize(
    "fields",
    [
        {"owner": "someone-else"},
        {"resolve_by_phone": True},
        {"api_base_url": "http://10.0.0.5:8080"},
        {"auth_token": None, "auth_token_env": "TWILIO_AUTH_TOKEN"},
    ],
    ids=["owner", "resolve_by_phone", "api_base_url", "auth_token_env"],
)
async def test_admin_only_settings(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio, fields: dict[str, Any]
) -> None:
    admin = await make_user(client)
    ann = await make_user(client)
    if fields.get("owner") == "someone-else":
        fields = {"owner": admin.email}
    body = {
        "type": "twilio",
        "name": "line",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "public_url": "https://example.com",
        **fields,
    }
    response = await client.post("/api/channels", json=body, headers=ann.headers)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "admin_required"
    if "owner" in fields:  # the same answer for an account that does not exist
        nobody = await client.post(
            "/api/channels", json={**body, "owner": "nobody@example.com"}, headers=ann.headers
        )
        assert (nobody.status_code, nobody.json()) == (403, response.json())
    assert (await client.get("/api/channels", headers=ann.headers)).json() == {"channels": []}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"account_sid": "AC123"}, "account_sid"),
        ({"public_url": "ftp://example.com"}, "public_url"),
        ({"public_url": "https://user:pw@example.com"}, "public_url"),
        ({"auth_token_env": "TWILIO_TOKEN"}, "body"),  # both token and variable
        ({"auth_token": None, "auth_token_env": "JWT_SECRET"}, "auth_token_env"),
        ({"auth_token": None, "auth_token_env": "DATABASE_URL"}, "auth_token_env"),
        ({"auth_token": None}, "body"),  # neither
        ({"provision_unknown": True}, "body"),  # without resolve_by_phone
        ({"endpoint": "nope"}, "endpoint"),
    ],
)
async def test_invalid_settings_are_422(
    client: httpx.AsyncClient,
    fake_twilio: FakeTwilio,
    fields: dict[str, Any],
    field: str,
) -> None:
    admin = await make_user(client)
    body = {
        "type": "twilio",
        "name": "line",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "public_url": "https://example.com",
        **fields,
    }
    response = await client.post("/api/channels", json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert field in str(problem)
    assert (await client.get("/api/channels", headers=admin.headers)).json() == {"channels": []}


async def test_public_url_with_the_webhook_path_is_used_verbatim(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio, public_url="https://x.invalid")
    verbatim = f"https://testserver/api/channels/twilio/{channel['id']}?tenant=ann"
    patched = await client.patch(
        f"/api/channels/{channel['id']}", json={"public_url": verbatim}, headers=admin.headers
    )
    assert patched.json()["webhook_url"] == verbatim
    response = await post_signed(client, verbatim, fixture_form("inbound__sms"))
    assert response.status_code == 200, response.text


async def test_patch_rotates_the_token_and_disables(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    url = f"/api/channels/{channel['id']}"
    new_token = "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a49"
    patched = await client.patch(url, json={"auth_token": new_token}, headers=admin.headers)
    assert patched.status_code == 200, patched.text
    assert new_token not in patched.text
    form = fixture_form("inbound__sms")
    old = await post_signed(client, channel["webhook_url"], form)
    assert old.status_code == 403
    assert (await post_signed(client, channel["webhook_url"], form, token=new_token)).is_success
    disabled = await client.patch(url, json={"enabled": False}, headers=admin.headers)
    assert disabled.json()["enabled"] is False
    refused = await client.patch(url, json={"name": None}, headers=admin.headers)
    assert refused.status_code == 422


async def test_delete(client: httpx.AsyncClient, fake_twilio: FakeTwilio) -> None:
    admin = await make_user(client)
    channel = await make_channel(client, admin, fake_twilio)
    url = f"/api/channels/{channel['id']}"
    assert (await client.delete(url, headers=admin.headers)).status_code == 204
    assert (await client.get(url, headers=admin.headers)).status_code == 404
    response = await post_signed(client, channel["webhook_url"], fixture_form("inbound__sms"))
    assert response.status_code == 404


async def test_only_an_admin_points_a_channel_at_an_environment_variable(
    client: httpx.AsyncClient, fake_twilio: FakeTwilio
) -> None:
    admin = await make_user(client)
    ann = await make_user(client)
    channel = await make_channel(client, ann, fake_twilio, api_base_url=None)
    url = f"/api/channels/{channel['id']}"
    body = {"auth_token_env": "TWILIO_AUTH_TOKEN"}
    refused = await client.patch(url, json=body, headers=ann.headers)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "admin_required"
    assert (await client.get(url, headers=ann.headers)).json()["auth_token_set"] is True
    allowed = await client.patch(url, json=body, headers=admin.headers)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["auth_token_env"] == "TWILIO_AUTH_TOKEN"
    wrong = await client.patch(url, json={"auth_token_env": "JWT_SECRET"}, headers=admin.headers)
    assert wrong.status_code == 422
