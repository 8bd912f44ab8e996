"""Admins manage users: the list and its search, roles, disabled accounts (refused at
login, refresh, every access token and API key at once), and the last enabled admin kept."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from relaychat.app import create_app
from relaychat.services import Services
from tests.support.backends import Backend, row_counts
from tests.support.factories import TestUser, make_conversation, make_key, make_user
from tests.support.sessions import refresh, session_of, sign_in
from tests.support.settings import VERBATIM_KEY

USER_FIELDS = {
    "id", "email", "name", "role", "phone_number", "created_at", "disabled", "disabled_at",
}  # fmt: skip
# Only turns a hang into a failure; no assertion depends on how long anything takes.
GUARD_SECONDS = 10.0


async def admin_and_user(client: httpx.AsyncClient) -> tuple[TestUser, TestUser]:
    """The instance's first user (its admin) and a plain user, no cookie left in the client."""
    admin, user = await make_user(client, name="Ada Admin"), await make_user(client)
    client.cookies.clear()
    assert (admin.role, user.role) == ("admin", "user")
    return admin, user


async def patch_user(
    client: httpx.AsyncClient, actor: TestUser, user_id: str, **body: Any
) -> httpx.Response:
    return await client.patch(f"/api/admin/users/{user_id}", json=body, headers=actor.headers)


async def test_every_admin_route_refuses_a_plain_user(
    client: httpx.AsyncClient, clean_backend: Backend, services: Services
) -> None:
    """Found from the app itself, so an admin route added later is checked too."""
    _, user = await admin_and_user(client)
    routes = [
        (method, str(context.path))
        for context in iter_route_contexts(create_app(services=services).routes)
        if str(context.path).startswith("/api/admin/")
        for method in sorted(context.methods or ())
        if method != "HEAD"
    ]
    assert {("GET", "/api/admin/users"), ("PATCH", "/api/admin/users/{user_id}")} <= set(routes)
    before = await row_counts(clean_backend)
    for method, path in routes:
        url = path.replace("{user_id}", user.id)
        body = {"role": "admin"} if method == "PATCH" else None
        response = await client.request(method, url, json=body, headers=user.headers)
        problem = response.json()
        assert (response.status_code, problem["code"]) == (403, "admin_required"), (method, url)
        # Nobody's answer: the same for an id that names no one.
        other = await client.request(
            method, path.replace("{user_id}", "nobody"), json=body, headers=user.headers
        )
        assert other.status_code == 403, (method, path)
    assert await row_counts(clean_backend) == before
    me = (await client.get("/api/user", headers=user.headers)).json()
    assert me["role"] == "user"
    assert (await client.get("/api/admin/users")).status_code == 401


async def test_users_are_listed_oldest_first_searched_and_paged(
    client: httpx.AsyncClient,
) -> None:
    admin, _ = await admin_and_user(client)
    await make_user(client, email="zoe.percent@example.com", name="Zoë 100% Ready")
    await make_user(client, email="under_score@example.com", name="Bob")
    await make_user(client, email="third@example.com", name="Carol PERCENT")
    client.cookies.clear()

    listed = await client.get("/api/admin/users", headers=admin.headers)
    assert listed.status_code == 200
    users = listed.json()["users"]
    assert listed.json()["next_cursor"] is None
    assert len(users) == 5 and users[0]["id"] == admin.id
    assert all(set(u) == USER_FIELDS for u in users)
    assert users[0]["disabled"] is False and users[0]["disabled_at"] is None
    created = [u["created_at"] for u in users]
    assert created == sorted(created)

    async def search(q: str) -> list[str]:
        found = await client.get("/api/admin/users", params={"q": q}, headers=admin.headers)
        assert found.status_code == 200, found.text
        return sorted(u["email"] for u in found.json()["users"])

    assert await search("percent") == ["third@example.com", "zoe.percent@example.com"]
    assert await search("ZOE.P") == ["zoe.percent@example.com"]
    # LIKE's wildcards are taken literally: "%" and "_" match only themselves.
    assert await search("100%") == ["zoe.percent@example.com"]
    assert await search("d_r") == []  # as a wildcard it would match "under"
    assert await search("under_") == ["under_score@example.com"]

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/admin/users", params=params, headers=admin.headers)).json()
        seen += [u["id"] for u in page["users"]]
        assert len(page["users"]) <= 2
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [u["id"] for u in users]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"cursor": "not-a-cursor"}, "cursor"), ({"limit": 0}, "limit"), ({"limit": 201}, "limit")],
)
async def test_bad_list_parameters_are_refused(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    admin, _ = await admin_and_user(client)
    response = await client.get("/api/admin/users", params=params, headers=admin.headers)
    assert (response.status_code, response.json()["field"]) == (422, field)


async def test_admins_promote_and_demote(client: httpx.AsyncClient) -> None:
    admin, user = await admin_and_user(client)
    promoted = await patch_user(client, admin, user.id, role="admin")
    assert promoted.status_code == 200
    assert set(promoted.json()) == USER_FIELDS
    assert (promoted.json()["role"], promoted.json()["id"]) == ("admin", user.id)
    # At once, with the token the user already holds.
    assert (await client.get("/api/admin/users", headers=user.headers)).status_code == 200
    # Two admins now: the first may step down.
    demoted = await patch_user(client, user, admin.id, role="user")
    assert demoted.json()["role"] == "user"
    refused = await client.get("/api/admin/users", headers=admin.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "admin_required")
    unchanged = await patch_user(client, user, user.id, role="admin", disabled=False)
    assert unchanged.status_code == 200 and unchanged.json()["role"] == "admin"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "owner"}, "role"),
        ({"disabled": "maybe"}, "disabled"),
        ({"email": "x@example.com"}, "email"),
    ],
)
async def test_bad_changes_are_refused(
    client: httpx.AsyncClient, clean_backend: Backend, body: dict[str, Any], field: str
) -> None:
    admin, user = await admin_and_user(client)
    before = await row_counts(clean_backend)
    response = await patch_user(client, admin, user.id, **body)
    assert (response.status_code, response.json()["field"]) == (422, field)
    missing = await patch_user(client, admin, "no-such-user", role="admin")
    assert (missing.status_code, missing.json()["code"]) == (404, "user_not_found")
    assert await row_counts(clean_backend) == before


async def test_the_last_enabled_admin_is_kept(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    admin, user = await admin_and_user(client)

    async def refused(actor: TestUser, target: str, code: str, **body: Any) -> None:
        before = await row_counts(clean_backend)
        listed = (await client.get("/api/admin/users", headers=admin.headers)).json()["users"]
        response = await patch_user(client, actor, target, **body)
        assert (response.status_code, response.json()["code"]) == (409, code), body
        assert await row_counts(clean_backend) == before
        after = (await client.get("/api/admin/users", headers=admin.headers)).json()["users"]
        assert after == listed  # nothing changed, not even a part of the request

    await refused(admin, admin.id, "last_admin", role="user")
    await refused(admin, admin.id, "cannot_disable_self", disabled=True)
    await refused(admin, admin.id, "cannot_disable_self", role="user", disabled=True)

    # A second admin, disabled: it does not count as one that is left.
    assert (await patch_user(client, admin, user.id, role="admin")).status_code == 200
    assert (await patch_user(client, admin, user.id, disabled=True)).status_code == 200
    await refused(admin, admin.id, "last_admin", role="user")
    # Enabled again, it does; and the first may then step down.
    assert (await patch_user(client, admin, user.id, disabled=False)).status_code == 200
    user_again = await sign_in(client, user.email, user.password)
    assert (await patch_user(client, admin, admin.id, role="user")).json()["role"] == "user"
    last = await client.patch(
        f"/api/admin/users/{user.id}", json={"role": "user"}, headers=user_again.headers
    )
    assert (last.status_code, last.json()["code"]) == (409, "last_admin")


async def test_admins_demoting_each_other_at_once_leave_one_admin(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Each request alone is allowed; together they would leave none. One must lose."""
    services.settings.login_rate_limit = "100/minute"  # the loser signs in again each round
    first, second = await admin_and_user(client)
    assert (await patch_user(client, first, second.id, role="admin")).status_code == 200
    for _ in range(8):
        answers = await asyncio.gather(
            patch_user(client, first, second.id, role="user", disabled=True),
            patch_user(client, second, first.id, role="user", disabled=True),
        )
        statuses = sorted(a.status_code for a in answers)
        # The loser is refused by the guard (409), or by the winner's change already
        # committed when its token was checked (403 user_disabled).
        assert statuses[0] == 200 and statuses[1] in (403, 409), statuses
        listed = await asyncio.gather(
            client.get("/api/admin/users", headers=first.headers),
            client.get("/api/admin/users", headers=second.headers),
        )
        users = next(r for r in listed if r.status_code == 200).json()["users"]
        admins = [u for u in users if u["role"] == "admin" and not u["disabled"]]
        assert len(admins) == 1, users
        # Put things back for the next round.
        winner = next(s for s in (first, second) if s.id == admins[0]["id"])
        loser = second if winner is first else first
        restored = await patch_user(client, winner, loser.id, role="admin", disabled=False)
        assert restored.status_code == 200
        refreshed = await sign_in(client, loser.email, loser.password)
        loser.access_token = refreshed.access_token


async def test_a_disabled_user_is_refused_everywhere_until_enabled_again(
    client: httpx.AsyncClient, clean_backend: Backend, services: Services
) -> None:
    admin, user = await admin_and_user(client)
    here, elsewhere = session_of(user), await sign_in(client, user.email, user.password)
    conversation = (await make_conversation(client, user, conversation_id="u-1"))["conversation_id"]
    key = await make_key(client, user)
    client.cookies.clear()
    external = {"role": "external", "content": "hello", "respond": False}
    sent = await client.post(f"/api/messages/{conversation}", json=external, headers=key.headers)
    assert sent.status_code == 201

    disabled = await patch_user(client, admin, user.id, disabled=True)
    assert disabled.status_code == 200
    assert disabled.json()["disabled"] is True and disabled.json()["disabled_at"]

    # Every access token, at once: the one of this session and any other.
    for session in (here, elsewhere):
        for method, url in (("GET", "/api/user"), ("GET", f"/api/messages/{conversation}")):
            response = await client.request(method, url, headers=session.headers)
            assert (response.status_code, response.json()["code"]) == (403, "user_disabled")
        posted = await client.post(
            f"/api/messages/{conversation}", json={"text": "hi"}, headers=session.headers
        )
        assert (posted.status_code, posted.json()["code"]) == (403, "user_disabled")
        assert (await refresh(client, session.refresh_secret)).status_code == 401
    # Login: only the right password learns that the account is disabled.
    wrong = await client.post("/api/auth/login", json={"email": user.email, "password": "nopenope"})
    assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_credentials")
    right = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert (right.status_code, right.json()["code"]) == (403, "user_disabled")
    assert "set-cookie" not in right.headers
    # The user's API key, on the gateway, refused and audited with the reason.
    refused = await client.post(f"/api/messages/{conversation}", json=external, headers=key.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "user_disabled")
    assert await audited(client, admin, key.id, "user_disabled")

    # Enabled again: login works, the key works, the old sessions stay ended.
    enabled = await patch_user(client, admin, user.id, disabled=False)
    assert enabled.json()["disabled"] is False and enabled.json()["disabled_at"] is None
    for session in (here, elsewhere):
        old = await client.get("/api/user", headers=session.headers)
        assert (old.status_code, old.json()["code"]) == (401, "invalid_token")
        assert (await refresh(client, session.refresh_secret)).status_code == 401
    fresh = await sign_in(client, user.email, user.password)
    assert (await client.get("/api/user", headers=fresh.headers)).status_code == 200
    again = await client.post(f"/api/messages/{conversation}", json=external, headers=key.headers)
    assert again.status_code == 201


async def audited(client: httpx.AsyncClient, admin: TestUser, key_id: str, reason: str) -> bool:
    """Whether the key's audit trail shows a refusal for `reason` (written in the background)."""
    for _ in range(int(GUARD_SECONDS / 0.05)):
        params = {"key_id": key_id, "outcome": "refused"}
        events = await client.get("/api/admin/audit", params=params, headers=admin.headers)
        if any(e["reason"] == reason and e["status"] == 403 for e in events.json()["events"]):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_refusals_of_a_disabled_user_write_nothing(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    """Besides the audit row of a refused key, a disabled user's requests store nothing."""
    admin, user = await admin_and_user(client)
    conversation = (await make_conversation(client, user))["conversation_id"]
    client.cookies.clear()
    assert (await patch_user(client, admin, user.id, disabled=True)).status_code == 200
    before = await row_counts(clean_backend)
    attempts = [
        client.post("/api/auth/login", json={"email": user.email, "password": user.password}),
        client.post(f"/api/messages/{conversation}", json={"text": "hi"}, headers=user.headers),
        client.patch("/api/user", json={"name": "Renamed"}, headers=user.headers),
        client.post(
            "/api/user/password",
            json={"current_password": user.password, "new_password": "a brand new passphrase"},
            headers=user.headers,
        ),
        client.post("/api/auth/logout-all", headers=user.headers),
        client.post("/api/keys", json={"name": "k"}, headers=user.headers),
    ]
    for attempt in attempts:
        response = await attempt
        assert (response.status_code, response.json()["code"]) == (403, "user_disabled")
    assert await row_counts(clean_backend) == before


async def test_a_system_key_cannot_post_for_a_disabled_user(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    """A system key may act for anyone, but not for an account an admin disabled: in the
    common path (an existing conversation, no reply) and the full one (a reply asked for)."""
    admin, user = await admin_and_user(client)
    conversation = (await make_conversation(client, user))["conversation_id"]
    client.cookies.clear()
    system = {"x-api-key": VERBATIM_KEY}
    quiet = {"role": "external", "content": "hello", "respond": False}
    answered = {**quiet, "respond": True}
    assert (await patch_user(client, admin, user.id, disabled=True)).status_code == 200

    before = await row_counts(clean_backend)
    for body in (quiet, answered):
        refused = await client.post(f"/api/messages/{conversation}", json=body, headers=system)
        assert (refused.status_code, refused.json()["code"]) == (403, "user_disabled"), body
    after = await row_counts(clean_backend)
    assert {t: n for t, n in after.items() if t != "audit_events"} == {
        t: n for t, n in before.items() if t != "audit_events"
    }

    assert (await patch_user(client, admin, user.id, disabled=False)).status_code == 200
    sent = await client.post(f"/api/messages/{conversation}", json=quiet, headers=system)
    assert sent.status_code == 201, sent.text


async def test_a_change_made_while_the_bus_is_down_is_answered_and_applied_here(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disabling a user, changing a key: committed, so answered as done (not 500) and in
    force on this worker at once, though the other workers' caches cannot be told."""
    admin, user = await admin_and_user(client)
    conversation = (await make_conversation(client, user))["conversation_id"]
    key = await make_key(client, user)
    client.cookies.clear()
    external = {"role": "external", "content": "hello", "respond": False}
    assert (
        await client.post(f"/api/messages/{conversation}", json=external, headers=key.headers)
    ).status_code == 201

    async def down(channel: str, payload: dict[str, Any]) -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(services.bus, "signal", down)
    renamed = await client.patch(
        f"/api/keys/{key.id}", json={"name": "renamed"}, headers=user.headers
    )
    assert renamed.status_code == 200, renamed.text
    disabled = await patch_user(client, admin, user.id, disabled=True)
    assert disabled.status_code == 200, disabled.text
    refused = await client.post(f"/api/messages/{conversation}", json=external, headers=key.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "user_disabled")
    me = await client.get("/api/user", headers=user.headers)
    assert (me.status_code, me.json()["code"]) == (403, "user_disabled")
