"""The signed-in user's profile, with E.164 phone numbers unique across users, and their
password, whose change ends every other session."""

from __future__ import annotations

import httpx
import pytest

from tests.support.backends import Backend, row_counts
from tests.support.factories import DEFAULT_PASSWORD, make_user
from tests.support.sessions import refresh, session_of, sign_in


async def test_get_and_patch_profile(client: httpx.AsyncClient) -> None:
    user = await make_user(client, name="Ann")
    me = (await client.get("/api/user", headers=user.headers)).json()
    assert (me["id"], me["name"], me["phone_number"]) == (user.id, "Ann", None)
    patched = await client.patch(
        "/api/user", json={"name": "Ann B", "phone_number": "(415) 555-2671"}, headers=user.headers
    )
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["phone_number"]) == ("Ann B", "+14155552671")
    cleared = await client.patch("/api/user", json={"phone_number": None}, headers=user.headers)
    assert cleared.json()["phone_number"] is None


async def test_invalid_phone_number_is_refused(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    user = await make_user(client)
    for bad in ("12", "not a number", "+1 555 0000 0000 0000"):
        response = await client.patch("/api/user", json={"phone_number": bad}, headers=user.headers)
        assert (response.status_code, response.json()["code"]) == (422, "invalid_phone_number")
    me = (await client.get("/api/user", headers=user.headers)).json()
    assert me["phone_number"] is None


async def test_phone_numbers_are_unique_across_users(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    alice, bob = await make_user(client), await make_user(client)
    ok = await client.patch(
        "/api/user", json={"phone_number": "+44 20 7946 0958"}, headers=alice.headers
    )
    assert ok.status_code == 200
    before = await row_counts(clean_backend)
    clash = await client.patch(
        "/api/user", json={"phone_number": "whatsapp:+442079460958"}, headers=bob.headers
    )
    assert (clash.status_code, clash.json()["code"]) == (409, "phone_number_taken")
    assert await row_counts(clean_backend) == before
    assert (await client.get("/api/user", headers=bob.headers)).json()["phone_number"] is None


async def test_profile_refusals_name_their_field_and_change_nothing(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    alice, bob = await make_user(client, name="Alice"), await make_user(client, name="Bob")
    taken = await client.patch(
        "/api/user", json={"phone_number": "+14155552671"}, headers=alice.headers
    )
    assert taken.json()["phone_number"] == "+14155552671"
    before = await row_counts(clean_backend)
    phone = "phone_number"
    cases = [
        ({"name": "B2", phone: "not a number"}, 422, "invalid_phone_number", phone),
        ({"name": "B2", phone: "tel:(415) 555-2671"}, 409, "phone_number_taken", phone),
        ({"name": "   ", phone: "+442079460958"}, 422, "validation_error", "name"),
        ({"name": "B2", "role": "admin"}, 422, "validation_error", "role"),
    ]
    for body, status, code, field in cases:
        response = await client.patch("/api/user", json=body, headers=bob.headers)
        problem = response.json()
        assert (response.status_code, problem["code"], problem["field"]) == (status, code, field)
    assert await row_counts(clean_backend) == before
    me = (await client.get("/api/user", headers=bob.headers)).json()
    assert (me["name"], me["phone_number"]) == ("Bob", None)


async def test_password_change_ends_every_other_session(client: httpx.AsyncClient) -> None:
    """The caller's session goes on; every other one ends at once: its access token is
    refused right away (not at its expiry) and its refresh cookie is dead."""
    user = await make_user(client)
    here = session_of(user)
    elsewhere = await sign_in(client, user.email, user.password)
    bystander = await make_user(client)
    client.cookies.clear()
    changed = await client.post(
        "/api/user/password",
        json={"current_password": user.password, "new_password": "a brand new passphrase"},
        headers=here.headers,
    )
    assert changed.status_code == 204, changed.text

    assert (await client.get("/api/user", headers=here.headers)).status_code == 200
    refused = await client.get("/api/user", headers=elsewhere.headers)
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_token")
    assert (await refresh(client, elsewhere.refresh_secret)).status_code == 401
    renewed = await refresh(client, here.refresh_secret)
    assert renewed.status_code == 200
    token = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
    assert (await client.get("/api/user", headers=token)).status_code == 200
    assert (await client.get("/api/user", headers=bystander.headers)).status_code == 200

    old = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert (old.status_code, old.json()["code"]) == (401, "invalid_credentials")
    await sign_in(client, user.email, "a brand new passphrase")


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (
            {"current_password": "not my password", "new_password": "a brand new passphrase"},
            403,
            "wrong_password",
            "current_password",
        ),
        (
            {"current_password": DEFAULT_PASSWORD, "new_password": "short"},
            422,
            "weak_password",
            "new_password",
        ),
        ({"new_password": "a brand new passphrase"}, 422, "validation_error", "current_password"),
    ],
)
async def test_refused_password_changes_write_nothing_and_end_nothing(
    client: httpx.AsyncClient,
    clean_backend: Backend,
    body: dict[str, str],
    status: int,
    code: str,
    field: str,
) -> None:
    user = await make_user(client)
    elsewhere = await sign_in(client, user.email, user.password)
    before = await row_counts(clean_backend)
    response = await client.post("/api/user/password", json=body, headers=user.headers)
    problem = response.json()
    assert (response.status_code, problem["code"], problem["field"]) == (status, code, field)
    assert await row_counts(clean_backend) == before
    for session in (user, elsewhere):
        assert (await client.get("/api/user", headers=session.headers)).status_code == 200
    assert (await refresh(client, elsewhere.refresh_secret)).status_code == 200
    await sign_in(client, user.email, user.password)


async def test_password_change_needs_a_live_access_token(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    body = {"current_password": user.password, "new_password": "a brand new passphrase"}
    missing = await client.post("/api/user/password", json=body)
    assert (missing.status_code, missing.json()["code"]) == (401, "unauthenticated")
    # A session ended by signing out everywhere cannot change it either.
    assert (await client.post("/api/auth/logout-all", headers=user.headers)).status_code == 204
    ended = await client.post("/api/user/password", json=body, headers=user.headers)
    assert (ended.status_code, ended.json()["code"]) == (401, "invalid_token")
    await sign_in(client, user.email, user.password)


async def test_guessing_the_current_password_is_rate_limited(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    wrong = {"current_password": "guess-guess", "new_password": "a brand new passphrase"}
    statuses = [
        (await client.post("/api/user/password", json=wrong, headers=user.headers)).status_code
        for _ in range(8)
    ]
    assert statuses == [403] * 7 + [429]
    right = {"current_password": user.password, "new_password": "a brand new passphrase"}
    limited = await client.post("/api/user/password", json=right, headers=user.headers)
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
