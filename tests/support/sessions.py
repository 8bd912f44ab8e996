"""Sign-in sessions as a browser on another device holds them: an access token and a
refresh secret, kept out of the shared test client's cookie jar."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tests.support.factories import TestUser


@dataclass
class SignIn:
    __test__ = False

    access_token: str
    refresh_secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def session_of(user: TestUser) -> SignIn:
    """The session `make_user` signed the user in with."""
    return SignIn(user.access_token, user.cookies["relaychat_refresh"])


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> SignIn:
    """Another session of the user; the client's cookie jar is left empty."""
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return SignIn(response.json()["access_token"], response.cookies["relaychat_refresh"])


async def refresh(client: httpx.AsyncClient, secret: str) -> httpx.Response:
    """POST /api/auth/refresh with this refresh secret as the cookie, as a browser sends it."""
    client.cookies.clear()
    response = await client.post(
        "/api/auth/refresh", headers={"Cookie": f"relaychat_refresh={secret}"}
    )
    client.cookies.clear()
    return response
