"""Factories that build test data through the public API, never through SQL."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import httpx

_seq = itertools.count(1)
DEFAULT_PASSWORD = "correct horse battery"


@dataclass
class TestUser:
    __test__ = False  # not a test class, despite the name

    id: str
    email: str
    password: str
    access_token: str
    role: str
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def make_user(
    client: httpx.AsyncClient,
    *,
    email: str | None = None,
    name: str = "Test User",
    password: str = DEFAULT_PASSWORD,
) -> TestUser:
    """Register and log in a user."""
    email = email or f"user{next(_seq)}@example.com"
    registered = await client.post(
        "/api/auth/register", json={"email": email, "password": password, "name": name}
    )
    assert registered.status_code == 201, registered.text
    login = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    body = login.json()
    return TestUser(
        id=body["user"]["id"],
        email=email,
        password=password,
        access_token=body["access_token"],
        role=body["user"]["role"],
        cookies=dict(login.cookies),
    )


async def make_conversation(
    client: httpx.AsyncClient, user: TestUser, **fields: Any
) -> dict[str, Any]:
    """Create a conversation owned by `user`."""
    response = await client.post("/api/convos", json=fields, headers=user.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def post_message(
    client: httpx.AsyncClient, user: TestUser, conversation_id: str, **body: Any
) -> dict[str, Any]:
    """Post a message as `user` and return it."""
    response = await client.post(
        f"/api/messages/{conversation_id}", json=body, headers=user.headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()["message"]
    return result


@dataclass
class TestKey:
    __test__ = False

    id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.secret}


async def make_key(
    client: httpx.AsyncClient, user: TestUser, *, system: bool = False, **permissions: Any
) -> TestKey:
    """An API key of `user` with these permissions."""
    response = await client.post(
        "/api/keys",
        json={"name": "test key", "system": system, "permissions": permissions},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return TestKey(body["key"]["id"], body["secret"])


async def make_sessionless_user(client: httpx.AsyncClient) -> TestUser:
    """A user whose login cookies do not stay in the shared client: an external system
    has no session, and a cookie would name the owner (resolution strategy 4)."""
    user = await make_user(client)
    client.cookies.clear()
    return user
