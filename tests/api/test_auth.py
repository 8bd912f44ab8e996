"""Registration, login, refresh rotation with reuse detection, logout, and signing out
everywhere."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from relaychat.services import Services
from tests.support.backends import Backend, row_counts
from tests.support.factories import DEFAULT_PASSWORD, make_conversation, make_user
from tests.support.sessions import refresh, session_of, sign_in

pytestmark = pytest.mark.usefixtures("services")


def refresh_cookie(secret: str) -> dict[str, str]:
    """A Cookie header carrying a refresh secret, as a browser would send it."""
    return {"Cookie": f"relaychat_refresh={secret}"}


async def test_first_user_is_admin_and_later_ones_are_not(client: httpx.AsyncClient) -> None:
    first = await make_user(client)
    second = await make_user(client)
    assert (first.role, second.role) == ("admin", "user")


async def test_register_returns_the_user_without_secrets(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": "Mixed.Case@Example.com", "password": DEFAULT_PASSWORD, "name": " Ann "},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "mixed.case@example.com"
    assert body["name"] == "Ann"
    assert {"id", "email", "name", "role"} <= body.keys()
    assert not any("password" in key for key in body)


@pytest.mark.parametrize(
    ("payload", "status", "code", "field"),
    [
        (
            {"email": "a@example.com", "password": "short", "name": "A"},
            422,
            "weak_password",
            "password",
        ),
        (
            {"email": "not-an-email", "password": DEFAULT_PASSWORD, "name": "A"},
            422,
            "validation_error",
            "email",
        ),
        ({"email": "a@example.com", "password": DEFAULT_PASSWORD}, 422, "validation_error", "name"),
        (
            {"email": "a@example.com", "password": 12345678, "name": "A"},
            422,
            "validation_error",
            "password",
        ),
    ],
)
async def test_bad_registrations_are_refused_and_write_nothing(
    client: httpx.AsyncClient,
    clean_backend: Backend,
    payload: dict[str, object],
    status: int,
    code: str,
    field: str,
) -> None:
    before = await row_counts(clean_backend)
    response = await client.post("/api/auth/register", json=payload)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert (problem["code"], problem["field"], problem["status"]) == (code, field, status)
    assert {"type", "title", "detail"} <= problem.keys()
    assert await row_counts(clean_backend) == before


async def test_duplicate_email_is_a_conflict(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    await make_user(client, email="dup@example.com")
    before = await row_counts(clean_backend)
    response = await client.post(
        "/api/auth/register",
        json={"email": "DUP@example.com", "password": DEFAULT_PASSWORD, "name": "B"},
    )
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"
    assert await row_counts(clean_backend) == before


async def test_registration_can_be_closed(client: httpx.AsyncClient, services: Services) -> None:
    services.settings.allow_registration = False
    response = await client.post(
        "/api/auth/register",
        json={"email": "x@example.com", "password": DEFAULT_PASSWORD, "name": "X"},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "registration_closed"


async def test_login_sets_a_strict_httponly_refresh_cookie(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    response = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    assert body["user"]["id"] == user.id
    cookie = response.headers["set-cookie"].lower()
    for attribute in ("httponly", "path=/api/auth", "samesite=strict", "secure"):
        assert attribute in cookie
    assert response.headers["cache-control"] == "no-store"


async def test_wrong_password_and_unknown_email_look_the_same(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    wrong = await client.post("/api/auth/login", json={"email": user.email, "password": "nopenope"})
    unknown = await client.post(
        "/api/auth/login", json={"email": "ghost@example.com", "password": "nopenope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "invalid_credentials"


async def test_login_attempts_are_rate_limited_per_address_and_email(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)  # one successful login already counted
    statuses = []
    for _ in range(7):
        response = await client.post(
            "/api/auth/login", json={"email": user.email, "password": "wrong-password"}
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 6 + [429]
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["code"] == "rate_limited"
    # Even the right password is refused while limited; another email is not affected.
    right = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert right.status_code == 429
    other = await client.post(
        "/api/auth/login", json={"email": "other@example.com", "password": "whatever1"}
    )
    assert other.status_code == 401


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    user = await make_user(client)
    first_secret = user.cookies["relaychat_refresh"]

    rotated = await client.post("/api/auth/refresh")
    assert rotated.status_code == 200
    second_secret = rotated.cookies["relaychat_refresh"]
    assert second_secret != first_secret
    me = await client.get(
        "/api/user", headers={"Authorization": f"Bearer {rotated.json()['access_token']}"}
    )
    assert me.status_code == 200

    # Someone replays the first (already used) secret: theft. The family dies.
    client.cookies.clear()
    before = await row_counts(clean_backend)
    reused = await client.post("/api/auth/refresh", headers=refresh_cookie(first_secret))
    assert reused.status_code == 401
    assert reused.json()["code"] == "refresh_token_reused"
    assert await row_counts(clean_backend) == before  # revoked in place, nothing issued
    client.cookies.clear()
    legit = await client.post("/api/auth/refresh", headers=refresh_cookie(second_secret))
    assert legit.status_code == 401
    assert legit.json()["code"] == "invalid_token"


async def test_refresh_without_cookie_or_with_garbage(client: httpx.AsyncClient) -> None:
    missing = await client.post("/api/auth/refresh")
    assert (missing.status_code, missing.json()["code"]) == (401, "unauthenticated")
    garbage = await client.post("/api/auth/refresh", headers=refresh_cookie("nope"))
    assert (garbage.status_code, garbage.json()["code"]) == (401, "invalid_token")


async def test_logout_revokes_the_refresh_family(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    secret = user.cookies["relaychat_refresh"]
    response = await client.post("/api/auth/logout")
    assert response.status_code == 204
    assert 'relaychat_refresh=""' in response.headers["set-cookie"] or "max-age=0" in (
        response.headers["set-cookie"].lower()
    )
    client.cookies.clear()
    again = await client.post("/api/auth/refresh", headers=refresh_cookie(secret))
    assert again.status_code == 401


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer eyJhbGciOiJub25lIn0.e30."],
)
async def test_protected_routes_need_a_valid_access_token(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get("/api/user", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] in {"unauthenticated", "invalid_token"}


async def test_refused_access_tokens_write_nothing_and_stay_401(
    client: httpx.AsyncClient, services: Services, clean_backend: Backend
) -> None:
    """Item 5 for JWTs: a bad, forged, expired or orphaned access token is refused without a
    write (no audit row, nothing else), so a flood cannot grow storage; and it stays 401, never
    429, past UNAUTHENTICATED_RATE_LIMIT: a 401 is what tells a client to refresh its token."""
    from relaychat.domain.accounts.tokens import AccessTokens

    user = await make_user(client)
    client.cookies.clear()
    expired = AccessTokens(services.settings.resolved_jwt_secret(), -60).issue(user.id, "user")
    forged = AccessTokens("not the server's secret" * 2, 600).issue(user.id, "admin")
    orphan = services.tokens.issue("0" * 32, "user")
    before = await row_counts(clean_backend)
    limit = int(services.settings.unauthenticated_rate_limit.split("/")[0])
    for i in range(limit + 5):
        token = ("garbage", expired, forged, orphan)[i % 4]
        response = await client.get("/api/user", headers={"Authorization": f"Bearer {token}"})
        assert (response.status_code, response.json()["code"]) == (401, "invalid_token")
    assert await row_counts(clean_backend) == before
    ok = await client.get("/api/user", headers=user.headers)
    assert ok.status_code == 200


async def test_a_token_of_a_user_who_is_gone_cannot_post(
    client: httpx.AsyncClient, services: Services, clean_backend: Backend
) -> None:
    """The message route reads the user with the conversation, in one query; a missing user
    is still refused as the token's fault (401), before any 404 of the conversation."""
    owner = await make_user(client)
    cid = (await make_conversation(client, owner))["conversation_id"]
    orphan = {"Authorization": f"Bearer {services.tokens.issue('0' * 32, 'user')}"}
    before = await row_counts(clean_backend)
    for target in (cid, "no-such-conversation", "x" * 500):
        response = await client.post(f"/api/messages/{target}", json={"text": "hi"}, headers=orphan)
        assert (response.status_code, response.json()["code"]) == (401, "invalid_token"), target
        assert response.json()["detail"] == "the token's user no longer exists"
    assert await row_counts(clean_backend) == before
    mine = await client.post(
        f"/api/messages/{cid}", json={"text": "hi", "respond": False}, headers=owner.headers
    )
    assert mine.status_code == 201
    assert mine.json()["message"]["sender"] == "Test User"
    other = await make_user(client)
    theirs = await client.post(f"/api/messages/{cid}", json={"text": "hi"}, headers=other.headers)
    assert (theirs.status_code, theirs.json()["code"]) == (404, "conversation_not_found")


async def test_logout_all_ends_every_session_at_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Sign out everywhere: this session and every other one, their access tokens refused
    at once (not at their expiry), their refresh cookies dead; signing in again works."""
    user = await make_user(client)
    here, elsewhere = session_of(user), await sign_in(client, user.email, user.password)
    # A token from before sessions were named (no `sid`, no `sep`) is one of them too.
    unnamed = {"Authorization": f"Bearer {services.tokens.issue(user.id, 'user')}"}
    for headers in (here.headers, elsewhere.headers, unnamed):
        assert (await client.get("/api/user", headers=headers)).status_code == 200

    response = await client.post("/api/auth/logout-all", headers=here.headers)
    assert response.status_code == 204
    cleared = response.headers.get_list("set-cookie")
    assert any(c.startswith("relaychat_refresh=") and "Path=/api/auth" in c for c in cleared)
    assert any(c.startswith("relaychat_access=") and "Path=/api" in c for c in cleared)
    assert all("max-age=0" in c.lower() for c in cleared)

    for headers in (here.headers, elsewhere.headers, unnamed):
        refused = await client.get("/api/user", headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (401, "invalid_token")
        assert refused.json()["detail"] == "the session was ended; sign in again"
    for secret in (here.refresh_secret, elsewhere.refresh_secret):
        assert (await refresh(client, secret)).status_code == 401
    again = await sign_in(client, user.email, user.password)
    assert (await client.get("/api/user", headers=again.headers)).status_code == 200
    assert (await refresh(client, again.refresh_secret)).status_code == 200


async def test_logout_all_touches_no_other_user(client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(client), await make_user(client)
    client.cookies.clear()
    assert (await client.post("/api/auth/logout-all", headers=alice.headers)).status_code == 204
    assert (await client.get("/api/user", headers=bob.headers)).status_code == 200
    assert (await refresh(client, bob.cookies["relaychat_refresh"])).status_code == 200


async def test_logout_all_needs_a_live_access_token(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    user = await make_user(client)
    before = await row_counts(clean_backend)
    # The refresh cookie alone is not enough: the route acts on the token's user.
    missing = await client.post("/api/auth/logout-all")
    assert (missing.status_code, missing.json()["code"]) == (401, "unauthenticated")
    assert await row_counts(clean_backend) == before
    assert (await client.get("/api/user", headers=user.headers)).status_code == 200


async def test_logout_all_ends_open_event_streams(client: httpx.AsyncClient, live_url: str) -> None:
    """A stream was opened with a token that no longer counts: it ends, and reconnecting
    with that token is refused."""
    user = await make_user(client)
    other = await sign_in(client, user.email, user.password)
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream("GET", "/api/events", headers=other.headers) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        await anext(lines)  # the stream is open and subscribed
        ended = await client.post("/api/auth/logout-all", headers=user.headers)
        assert ended.status_code == 204

        async def drain() -> None:
            async for _ in lines:
                pass

        await asyncio.wait_for(drain(), 10)  # a guard against a hang, not a timing claim
        again = await http.get("/api/events", headers=other.headers)
        assert (again.status_code, again.json()["code"]) == (401, "invalid_token")
