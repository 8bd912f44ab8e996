"""The signed-in user's profile, with E.164 phone numbers unique across users."""

from __future__ import annotations

import httpx

from tests.support.backends import Backend, row_counts
from tests.support.factories import make_user


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
