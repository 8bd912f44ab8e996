"""API keys: secrets shown once, verification, permissions, eviction on every worker, scoping."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from relaychat.domain.access import keys
from relaychat.domain.access.key_cache import KeyCache
from relaychat.domain.access.keys import KeyPermissions, KeyPrincipal, KeyRefused
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.models import ApiKey
from relaychat.storage.types import utcnow
from relaychat.workers.key_last_used import KeyLastUsedWriter
from tests.support.backends import Backend
from tests.support.factories import TestUser, make_user
from tests.support.keys import create_key, keys_app_client
from tests.support.settings import VERBATIM_KEY
from tests.support.workers import second_worker

SECRET_SHAPE = re.compile(r"rck_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
KEY_FIELDS = {
    "id", "name", "prefix", "owner_id", "system", "status", "permissions", "created_at",
    "last_used_at", "expires_at", "revoked_at", "previous_valid_until",
}  # fmt: skip


@pytest.fixture
async def kclient(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with keys_app_client(services) as http:
        yield http


@pytest.fixture
async def cache(services: Services) -> AsyncIterator[KeyCache]:
    built = KeyCache(services.bus, services.sessionmaker)
    try:
        yield built
    finally:
        await built.close()


async def auth(services: Services, cache: KeyCache, raw_key: str) -> KeyPrincipal:
    async with services.sessionmaker() as session:
        return await keys.authenticate(session, cache, raw_key)


async def refusal(services: Services, cache: KeyCache, raw_key: str) -> KeyRefused:
    with pytest.raises(KeyRefused) as caught:
        await auth(services, cache, raw_key)
    assert caught.value.status == 403
    return caught.value


async def key_row(services: Services, key_id: str) -> ApiKey:
    async with services.sessionmaker() as session:
        row = await session.get(ApiKey, key_id)
    assert row is not None
    return row


def shifted_clock(monkeypatch: pytest.MonkeyPatch, delta: timedelta) -> None:
    """Make the key checks see a later time."""
    real = utcnow
    monkeypatch.setattr(keys, "utcnow", lambda: real() + delta)


async def test_secret_is_shown_once_and_only_its_hash_is_stored(
    kclient: httpx.AsyncClient, services: Services
) -> None:
    alice = await make_user(kclient)
    created = await create_key(kclient, alice, name="sms gateway")
    secret, key = created["secret"], created["key"]
    assert SECRET_SHAPE.fullmatch(secret)
    assert set(key) == KEY_FIELDS
    assert key["prefix"] == secret[:16] and key["status"] == "active"
    assert (key["owner_id"], key["system"], key["last_used_at"]) == (alice.id, False, None)

    row = await key_row(services, key["id"])
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert row.secret_hash == digest and row.previous_secret_hash is None
    assert row.lookup == secret[4:16]
    stored = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
    assert not any(secret[17:] in value for value in stored)

    again = await kclient.get(f"/api/keys/{key['id']}", headers=alice.headers)
    listed = await kclient.get("/api/keys", headers=alice.headers)
    assert again.json() == key and listed.json() == {"keys": [key]}
    for response in (again, listed):
        assert secret[17:] not in response.text and digest not in response.text


async def test_good_wrong_unknown_and_malformed_keys(
    kclient: httpx.AsyncClient, services: Services, cache: KeyCache
) -> None:
    alice = await make_user(kclient)
    created = await create_key(kclient, alice, permissions={"allowed_conversations": ["sms-*"]})
    secret, key_id = created["secret"], created["key"]["id"]
    principal = await auth(services, cache, secret)
    assert principal == KeyPrincipal(
        key_id=key_id,
        key_ref=key_id,
        name="k",
        owner_id=alice.id,
        system=False,
        permissions=KeyPermissions(allowed_conversations=["sms-*"]),
    )
    assert principal.acts_for(alice.id) and not principal.acts_for("someone-else")
    # Surrounding whitespace from a header is not part of the key.
    assert (await auth(services, cache, f" {secret} ")).key_id == key_id

    wrong_secret = secret[:17] + secrets.token_urlsafe(32)
    unknown_lookup = "rck_000000000000" + secret[16:]
    for bad in (wrong_secret, unknown_lookup, "", "nope", "rck_", secret + "!", "x" * 5000):
        refused = await refusal(services, cache, bad)
        assert refused.code == "invalid_api_key"
        assert refused.key_id is None


async def test_unknown_lookup_and_wrong_secret_refuse_alike_in_constant_time(
    kclient: httpx.AsyncClient,
    services: Services,
    cache: KeyCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = await make_user(kclient)
    secret = (await create_key(kclient, alice))["secret"]
    await auth(services, cache, secret)  # cached: both paths below then skip the same work
    compared: list[tuple[str, str]] = []

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(keys, "hmac", SimpleNamespace(compare_digest=spy))
    problems = []
    for bad in (secret[:17] + secrets.token_urlsafe(32), "rck_000000000000" + secret[16:]):
        compared.clear()
        refused = await refusal(services, cache, bad)
        problems.append(refused.to_problem())
        digest = hashlib.sha256(bad.encode()).hexdigest()
        # The presented key's digest went through compare_digest, never `==`.
        assert compared and all(a == digest for a, _ in compared)
    assert problems[0] == problems[1]


async def test_revoked_and_expired_keys_are_refused(
    kclient: httpx.AsyncClient,
    services: Services,
    cache: KeyCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = await make_user(kclient)
    revoked = await create_key(kclient, alice)
    await auth(services, cache, revoked["secret"])  # cached before the revocation
    gone = await kclient.delete(f"/api/keys/{revoked['key']['id']}", headers=alice.headers)
    assert gone.status_code == 204
    refused = await refusal(services, cache, revoked["secret"])
    assert (refused.code, refused.key_id, refused.owner_id) == (
        "api_key_revoked",
        revoked["key"]["id"],
        alice.id,
    )
    # Without the secret, nobody learns that the key exists, revoked or not.
    wrong = revoked["secret"][:17] + secrets.token_urlsafe(32)
    assert (await refusal(services, cache, wrong)).code == "invalid_api_key"

    soon = datetime.now(UTC) + timedelta(hours=1)
    expiring = await create_key(kclient, alice, expires_at=soon.isoformat())
    assert (await auth(services, cache, expiring["secret"])).key_id == expiring["key"]["id"]
    shifted_clock(monkeypatch, timedelta(hours=2))
    assert (await refusal(services, cache, expiring["secret"])).code == "api_key_expired"


async def test_rotation_keeps_the_old_secret_for_the_grace_period(
    kclient: httpx.AsyncClient,
    services: Services,
    cache: KeyCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = await make_user(kclient)
    created = await create_key(kclient, alice)
    old, key_id = created["secret"], created["key"]["id"]
    await auth(services, cache, old)
    rotated = await kclient.post(
        f"/api/keys/{key_id}/rotate", json={"grace_seconds": 600}, headers=alice.headers
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and new[:16] == old[:16] and SECRET_SHAPE.fullmatch(new)
    assert rotated.json()["key"]["previous_valid_until"] is not None
    row = await key_row(services, key_id)
    assert row.secret_hash == hashlib.sha256(new.encode()).hexdigest()
    assert row.previous_secret_hash == hashlib.sha256(old.encode()).hexdigest()

    for secret in (old, new):
        assert (await auth(services, cache, secret)).key_id == key_id
    with monkeypatch.context() as patched:
        shifted_clock(patched, timedelta(seconds=601))
        assert (await refusal(services, cache, old)).code == "invalid_api_key"
        assert (await auth(services, cache, new)).key_id == key_id

    # Without a body the grace is an hour; with 0 the previous secret stops at once.
    default = await kclient.post(f"/api/keys/{key_id}/rotate", headers=alice.headers)
    until = datetime.fromisoformat(default.json()["key"]["previous_valid_until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)
    newer = default.json()["secret"]
    immediate = await kclient.post(
        f"/api/keys/{key_id}/rotate", json={"grace_seconds": 0}, headers=alice.headers
    )
    newest = immediate.json()["secret"]
    assert (await refusal(services, cache, newer)).code == "invalid_api_key"
    assert (await refusal(services, cache, new)).code == "invalid_api_key"
    assert (await auth(services, cache, newest)).key_id == key_id

    too_long = await kclient.post(
        f"/api/keys/{key_id}/rotate", json={"grace_seconds": 8 * 86400}, headers=alice.headers
    )
    assert (too_long.status_code, too_long.json()["field"]) == (422, "grace_seconds")


async def test_environment_keys_are_system_keys(services: Services) -> None:
    first, second, third = (secrets.token_hex(32) for _ in range(3))
    assert len(keys.system_keys(first, [first, f" {first} "])) == 1
    assert keys.system_keys(None, " , ,") == []
    configured = keys.system_keys(first, f"{second}, {third},,")
    from_settings = keys.system_keys_from_settings(
        SimpleNamespace(external_message_api_key=first, external_api_keys=[second, third])
    )
    assert configured == from_settings and len(configured) == 3
    assert not any(raw in repr(configured) for raw in (first, second, third))

    cache = KeyCache(services.bus, services.sessionmaker, system_keys=configured)
    try:
        for raw in (first, second, third):
            principal = await auth(services, cache, raw)
            assert principal == KeyPrincipal(
                key_id=None,
                key_ref="env:" + hashlib.sha256(raw.encode()).hexdigest()[:8],
                name="system",
                owner_id=None,
                system=True,
                permissions=KeyPermissions.unrestricted(),
            )
            perms = principal.permissions
            assert perms.can_create_conversations and perms.can_name_user and perms.can_respond
            assert perms.allowed_conversations is None and perms.rate_limit is None
        assert principal.acts_for("anyone")
        assert (await refusal(services, cache, secrets.token_hex(32))).code == "invalid_api_key"
        assert (await refusal(services, cache, first[:-1])).code == "invalid_api_key"
    finally:
        await cache.close()


async def test_admins_see_the_keys_from_the_environment(
    kclient: httpx.AsyncClient, services: Services
) -> None:
    """An admin sees each environment key by reference, with the variable that sets it and
    its latest request; never the key, nor to anyone else."""
    admin = await make_user(kclient)
    person = await make_user(kclient)
    assert (admin.role, person.role) == ("admin", "user")
    ref = "env:" + hashlib.sha256(VERBATIM_KEY.encode()).hexdigest()[:8]

    listed = await kclient.get("/api/keys/environment", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json() == {
        "keys": [{"ref": ref, "source": "EXTERNAL_MESSAGE_API_KEY", "last_used_at": None}]
    }
    assert VERBATIM_KEY not in listed.text

    # A request with the key, refused (nothing to answer with), is its latest use.
    before = datetime.now(UTC)
    posted = await kclient.post(
        "/api/messages/no-such-conversation",
        json={"content": "hi", "role": "external"},
        headers={"x-api-key": VERBATIM_KEY},
    )
    assert (posted.status_code, posted.json()["code"]) == (422, "no_endpoint"), posted.text
    await services.audit.flush()
    [seen] = (await kclient.get("/api/keys/environment", headers=admin.headers)).json()["keys"]
    assert seen["ref"] == ref
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(seen["last_used_at"])

    refused = await kclient.get("/api/keys/environment", headers=person.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "admin_required")
    assert ref not in refused.text
    anonymous = await kclient.get("/api/keys/environment")
    assert anonymous.status_code == 401


async def test_environment_keys_name_their_variable() -> None:
    message_key, more = secrets.token_hex(32), secrets.token_hex(32)
    configured = keys.system_keys(message_key, f"{more},{message_key}")
    assert [k.source for k in configured] == ["EXTERNAL_MESSAGE_API_KEY", "EXTERNAL_API_KEYS"]
    assert keys.system_keys(None, more)[0].source == "EXTERNAL_API_KEYS"


async def test_permissions_through_the_api(kclient: httpx.AsyncClient) -> None:
    alice = await make_user(kclient)
    permissions = {
        "allowed_endpoints": ["fake"],
        "allowed_conversations": ["sms-*"],
        "required_metadata": ["phoneNumber"],
        "rate_limit": {"requests": 100, "window": 60},
        "allowed_agents": None,
        "can_create_conversations": True,
        "can_respond": True,
        "respond_default": False,
        "default_endpoint": "fake",
        "default_model": "fake-model",
        "default_agent_id": None,
        "can_name_user": True,
        "max_tokens_per_day": 5000,
    }
    key = (await create_key(kclient, alice, permissions=permissions))["key"]
    assert key["permissions"] == permissions
    assert (await create_key(kclient, alice))["key"]["permissions"] == KeyPermissions().model_dump()

    url = f"/api/keys/{key['id']}"
    patched = await kclient.patch(
        url,
        json={"name": "renamed", "permissions": {"allowed_conversations": ["wa-*"]}},
        headers=alice.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "renamed"
    assert patched.json()["permissions"]["allowed_conversations"] == ["wa-*"]
    # A merge patch: what it does not name stays.
    assert patched.json()["permissions"]["rate_limit"] == {"requests": 100, "window": 60}
    naive = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None).isoformat()
    expiring = await kclient.patch(url, json={"expires_at": naive}, headers=alice.headers)
    assert expiring.json()["expires_at"].endswith("Z")
    cleared = await kclient.patch(url, json={"expires_at": None}, headers=alice.headers)
    assert cleared.json()["expires_at"] is None

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    for body, field in (
        ({"name": "x", "permissions": {"can_fly": True}}, "permissions.can_fly"),
        ({"name": "x", "permissions": {"rate_limit": {"requests": 0, "window": 1}}}, None),
        ({"name": "x", "expires_at": past}, "expires_at"),
        ({"name": ""}, "name"),
        ({"name": "x", "secret": "mine"}, "secret"),
    ):
        response = await kclient.post("/api/keys", json=body, headers=alice.headers)
        assert response.status_code == 422, response.text
        if field:
            assert response.json()["field"] == field
    bad_patch = await kclient.patch(url, json={"expires_at": past}, headers=alice.headers)
    assert (bad_patch.status_code, bad_patch.json()["field"]) == (422, "expires_at")


async def test_key_changes_reach_every_worker_at_once(
    kclient: httpx.AsyncClient,
    services: Services,
    cache: KeyCache,
    clean_backend: Backend,
    settings: Settings,
) -> None:
    alice = await make_user(kclient)
    created = await create_key(kclient, alice)
    secret, url = created["secret"], f"/api/keys/{created['key']['id']}"
    async with second_worker(services, clean_backend, settings) as other:
        # A long TTL: only the signal can explain a fresh answer.
        there = KeyCache(other.bus, other.sessionmaker, ttl_seconds=3600)
        try:
            assert (await auth(other, there, secret)).permissions.allowed_conversations is None
            await auth(services, cache, secret)
            await kclient.patch(
                url,
                json={"permissions": {"allowed_conversations": ["sms-*"]}},
                headers=alice.headers,
            )
            for _ in range(100):
                principal = await auth(other, there, secret)
                if principal.permissions.allowed_conversations == ["sms-*"]:
                    break
                await asyncio.sleep(0.02)
            assert principal.permissions.allowed_conversations == ["sms-*"]

            await auth(services, cache, secret)
            assert (await kclient.delete(url, headers=alice.headers)).status_code == 204
            # On the worker that revoked it, the very next request is refused.
            assert (await refusal(services, cache, secret)).code == "api_key_revoked"
            for _ in range(100):
                try:
                    await auth(other, there, secret)
                except KeyRefused as refused:
                    assert refused.code == "api_key_revoked"
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the other worker still accepts a revoked key")
        finally:
            await there.close()


async def test_last_used_is_tracked_without_a_write_per_request(
    kclient: httpx.AsyncClient, services: Services
) -> None:
    alice = await make_user(kclient)
    created = await create_key(kclient, alice)
    writes: list[str] = []
    throttled = KeyLastUsedWriter(services.sessionmaker)
    every_time = KeyLastUsedWriter(services.sessionmaker, interval=0)
    for writer in (throttled, every_time):
        original = writer._write_last_used

        async def counted(key_id: str, moment: datetime, original: Any = original) -> None:
            writes.append(key_id)
            await original(key_id, moment)

        writer._write_last_used = counted  # type: ignore[method-assign]
    throttled_cache = KeyCache(services.bus, services.sessionmaker, on_use=throttled.touch)
    every_time_cache = KeyCache(services.bus, services.sessionmaker, on_use=every_time.touch)
    try:
        for _ in range(5):
            await auth(services, throttled_cache, created["secret"])
        await throttled.flush()
        assert len(writes) == 1
        used = await kclient.get(f"/api/keys/{created['key']['id']}", headers=alice.headers)
        first = used.json()["last_used_at"]
        assert first is not None
        await auth(services, every_time_cache, created["secret"])
        await every_time.flush()
        assert len(writes) == 2
        row = await key_row(services, created["key"]["id"])
        assert row.last_used_at is not None and row.last_used_at.isoformat() > first[:-1]
    finally:
        for cache in (throttled_cache, every_time_cache):
            await cache.close()
        await throttled.close()
        await every_time.close()


async def _every_action(client: httpx.AsyncClient, actor: TestUser, key_id: str) -> list[int]:
    url = f"/api/keys/{key_id}"
    responses = [
        await client.get(url, headers=actor.headers),
        await client.patch(url, json={"name": "taken"}, headers=actor.headers),
        await client.get(f"{url}/audit", headers=actor.headers),
        await client.post(f"{url}/rotate", headers=actor.headers),
        await client.delete(url, headers=actor.headers),
    ]
    for response in responses:
        if response.status_code == 404:
            assert response.json()["code"] == "api_key_not_found"
    return [r.status_code for r in responses]


async def test_owner_scoping_matrix(
    kclient: httpx.AsyncClient, services: Services, cache: KeyCache
) -> None:
    alice = await make_user(kclient)  # the first user: an admin
    bob, carol = await make_user(kclient), await make_user(kclient)
    assert (alice.role, bob.role, carol.role) == ("admin", "user", "user")
    allowed, hidden = [200, 200, 200, 200, 204], [404, 404, 404, 404, 404]
    matrix = [
        (carol, bob, hidden),
        (bob, alice, hidden),
        (carol, carol, allowed),
        (bob, bob, allowed),
        (alice, bob, allowed),
    ]
    for i, (actor, owner, expected) in enumerate(matrix):
        key = (await create_key(kclient, owner, name=f"m{i}"))["key"]
        assert await _every_action(kclient, actor, key["id"]) == expected, (actor, owner)

    bob_key = (await create_key(kclient, bob, name="bob's"))["key"]
    alice_key = (await create_key(kclient, alice, name="alice's"))["key"]

    async def names(user: TestUser, query: str = "") -> set[str]:
        response = await kclient.get(f"/api/keys{query}", headers=user.headers)
        assert response.status_code == 200, response.text
        return {k["name"] for k in response.json()["keys"] if k["status"] == "active"}

    # m0 and m1 survived the matrix: their actors could not see them.
    assert await names(bob) == {"bob's", "m0"}
    assert await names(alice) == {"alice's", "m1"}
    assert await names(carol) == set()
    assert await names(alice, "?all=true") == {"bob's", "alice's", "m0", "m1"}
    everyone = await kclient.get("/api/keys?all=true", headers=bob.headers)
    assert (everyone.status_code, everyone.json()["code"]) == (403, "admin_required")
    anonymous = await kclient.get("/api/keys")
    assert anonymous.status_code == 401
    assert (await kclient.get(f"/api/keys/{bob_key['id']}")).status_code == 401

    async def count() -> int:
        async with services.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(ApiKey)) or 0)

    before = await count()
    refused = await kclient.post(
        "/api/keys", json={"name": "s", "system": True}, headers=bob.headers
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "admin_required")
    assert await count() == before
    system = await create_key(kclient, alice, name="ops", system=True)
    assert system["key"]["system"] is True
    principal = await auth(services, cache, system["secret"])
    assert principal.system and principal.permissions.can_name_user
    assert principal.acts_for(bob.id) and principal.owner_id == alice.id
    user_principal = await auth(services, cache, (await create_key(kclient, bob))["secret"])
    assert not user_principal.acts_for(alice.id) and user_principal.acts_for(bob.id)
    assert alice_key["system"] is False


async def test_revoked_keys_stay_revoked(kclient: httpx.AsyncClient, services: Services) -> None:
    alice = await make_user(kclient)
    key_id = (await create_key(kclient, alice))["key"]["id"]
    url = f"/api/keys/{key_id}"
    assert (await kclient.delete(url, headers=alice.headers)).status_code == 204
    first = (await key_row(services, key_id)).revoked_at
    assert (await kclient.delete(url, headers=alice.headers)).status_code == 204
    assert (await key_row(services, key_id)).revoked_at == first
    shown = await kclient.get(url, headers=alice.headers)
    assert shown.json()["status"] == "revoked" and shown.json()["revoked_at"] is not None
    for response in (
        await kclient.patch(url, json={"name": "back"}, headers=alice.headers),
        await kclient.post(f"{url}/rotate", headers=alice.headers),
    ):
        assert (response.status_code, response.json()["code"]) == (409, "api_key_inactive")
    missing = await kclient.get("/api/keys/no-such-key", headers=alice.headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "api_key_not_found")


async def test_a_secret_rotated_without_a_signal_works_at_once(
    kclient: httpx.AsyncClient, services: Services, cache: KeyCache
) -> None:
    alice = await make_user(kclient)
    created = await create_key(kclient, alice)
    await auth(services, cache, created["secret"])  # cached with the old hash
    # As a CLI without Redis does: the row changes, no worker hears of it.
    async with services.sessionmaker() as session:
        row = await session.get(ApiKey, created["key"]["id"])
        assert row is not None
        _, new = await keys.rotate_key(session, row, grace_seconds=0)
    assert (await auth(services, cache, new)).key_id == created["key"]["id"]
    assert (await refusal(services, cache, created["secret"])).code == "invalid_api_key"


async def test_patching_permissions_is_a_merge_patch(kclient: httpx.AsyncClient) -> None:
    alice = await make_user(kclient)
    restricted = {
        "allowed_conversations": ["sms-*"],
        "required_metadata": ["phoneNumber"],
        "rate_limit": {"requests": 10, "window": 60},
        "can_create_conversations": True,
        "respond_default": False,
        "default_endpoint": "fake",
    }
    key = (await create_key(kclient, alice, permissions=restricted))["key"]
    url = f"/api/keys/{key['id']}"

    async def patch(permissions: Any) -> dict[str, Any]:
        response = await kclient.patch(
            url, json={"permissions": permissions}, headers=alice.headers
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["permissions"]
        return result

    # The case of the issue: a new rate limit leaves the restrictions as they were.
    changed = await patch({"rate_limit": {"requests": 5, "window": 30}})
    assert changed == {**key["permissions"], "rate_limit": {"requests": 5, "window": 30}}
    # Nested objects merge too; `null` resets one field to its default, the rest stay.
    changed = await patch({"rate_limit": {"window": 90}, "required_metadata": None})
    assert changed["rate_limit"] == {"requests": 5, "window": 90}
    assert changed["required_metadata"] == []
    assert changed["allowed_conversations"] == ["sms-*"]
    assert (changed["respond_default"], changed["default_endpoint"]) == (False, "fake")
    assert (await patch({"rate_limit": None}))["allowed_conversations"] == ["sms-*"]
    bad = await kclient.patch(
        url, json={"permissions": {"rate_limit": {"requests": 0}}}, headers=alice.headers
    )
    assert (bad.status_code, bad.json()["field"]) == (422, "permissions.rate_limit.requests")
    unknown = await kclient.patch(
        url, json={"permissions": {"can_fly": True}}, headers=alice.headers
    )
    assert (unknown.status_code, unknown.json()["field"]) == (422, "permissions.can_fly")
    stored = (await kclient.get(url, headers=alice.headers)).json()["permissions"]
    assert stored["allowed_conversations"] == ["sms-*"] and stored["rate_limit"] is None


async def test_a_default_agent_must_be_one_the_owner_may_use(kclient: httpx.AsyncClient) -> None:
    alice, bob = await make_user(kclient), await make_user(kclient)  # alice is the admin
    private = await kclient.post(
        "/api/agents", json={"name": "Alice's", "endpoint": "fake"}, headers=alice.headers
    )
    usable = await kclient.post(
        "/api/agents", json={"name": "Bob's", "endpoint": "fake"}, headers=bob.headers
    )
    not_yours, nonexistent = private.json()["agent_id"], "agent_" + "0" * 32
    answers = set()
    for agent_id in (not_yours, nonexistent):
        permissions = {"default_agent_id": agent_id}
        created = await kclient.post(
            "/api/keys", json={"name": "k", "permissions": permissions}, headers=bob.headers
        )
        key = await create_key(kclient, bob)
        patched = await kclient.patch(
            f"/api/keys/{key['key']['id']}",
            json={"permissions": permissions},
            headers=bob.headers,
        )
        for response in (created, patched):
            body = response.json()
            answers.add((response.status_code, body["code"], body["field"]))
    assert answers == {(404, "agent_not_found", "permissions.default_agent_id")}
    listed = (await kclient.get("/api/keys", headers=bob.headers)).json()["keys"]
    assert {k["permissions"]["default_agent_id"] for k in listed} == {None}
    ok = {"default_agent_id": usable.json()["agent_id"]}
    assert (await create_key(kclient, bob, permissions=ok))["key"]["permissions"] == {
        **KeyPermissions().model_dump(),
        **ok,
    }


async def test_a_default_endpoint_and_model_must_be_configured(
    kclient: httpx.AsyncClient,
) -> None:
    """The conversations' own check: defaults that would fail every conversation the key
    creates are refused when written, with the same code, and nothing is stored."""
    alice = await make_user(kclient)
    refused = {
        "permissions.default_endpoint": [
            {"default_endpoint": "nope"},
            {"default_endpoint": "openAI", "default_model": "gpt-4o"},
        ],
        "permissions.default_model": [{"default_endpoint": "fake", "default_model": "gpt-4o"}],
    }
    key = await create_key(kclient, alice)
    url = f"/api/keys/{key['key']['id']}"
    answers: dict[str, set[tuple[int, str]]] = {}
    for cases in refused.values():
        for permissions in cases:
            created = await kclient.post(
                "/api/keys", json={"name": "k", "permissions": permissions}, headers=alice.headers
            )
            patched = await kclient.patch(
                url, json={"permissions": permissions}, headers=alice.headers
            )
            for response in (created, patched):
                body = response.json()
                answers.setdefault(body.get("field"), set()).add(
                    (response.status_code, body["code"])
                )
    assert answers == {field: {(422, "validation_error")} for field in refused}
    listed = (await kclient.get("/api/keys", headers=alice.headers)).json()["keys"]
    assert [k["permissions"]["default_endpoint"] for k in listed] == [None]
    ok = {"default_endpoint": "fake", "default_model": "fake-model-mini"}
    assert (await kclient.patch(url, json={"permissions": ok}, headers=alice.headers)).json()[
        "permissions"
    ]["default_model"] == "fake-model-mini"
    # A change elsewhere does not re-check unchanged defaults.
    other = {"permissions": {"can_respond": False}}
    assert (await kclient.patch(url, json=other, headers=alice.headers)).status_code == 200
