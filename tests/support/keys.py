"""Helpers for the API key routes: an app client that has them, a key made over the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from relaychat.api import audit as audit_api
from relaychat.api import keys as keys_api
from relaychat.app import create_app
from relaychat.services import Services
from tests.support.factories import TestUser


@asynccontextmanager
async def keys_app_client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the key and audit routes, whether or not app.py registers them yet."""
    app = create_app(services=services)
    paths = {getattr(route, "path", None) for route in app.routes}
    for module in (keys_api, audit_api):
        if not any(getattr(route, "path", None) in paths for route in module.router.routes):
            app.include_router(module.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


async def create_key(client: httpx.AsyncClient, user: TestUser, **body: Any) -> dict[str, Any]:
    """Create a key as `user`; returns `{key, secret}`."""
    response = await client.post("/api/keys", json={"name": "k", **body}, headers=user.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
