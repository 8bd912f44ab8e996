"""The newcomer path over real HTTP against a real server process."""

from __future__ import annotations

import asyncio
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.live import running_server, server_env

pytestmark = pytest.mark.server


def refresh_secret(response: httpx.Response) -> str:
    """The refresh secret from Set-Cookie, checking the cookie's safety attributes."""
    header = response.headers["set-cookie"]
    cookie = SimpleCookie()
    cookie.load(header)
    morsel = cookie["relaychat_refresh"]
    assert morsel["httponly"] and morsel["path"] == "/api/auth"
    assert morsel["samesite"].lower() == "strict"
    return morsel.value


async def test_newcomer_walkthrough(clean_backend: Backend, tmp_path: Path) -> None:
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}live:")
    async with running_server(env) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        assert (await http.get("/readyz")).json()["status"] == "ready"
        assert (await http.get("/docs")).status_code == 200
        assert "/api/auth/register" in (await http.get("/openapi.json")).json()["paths"]

        registered = await http.post(
            "/api/auth/register",
            json={"email": "new@example.com", "password": "a long password", "name": "New"},
        )
        assert registered.status_code == 201
        assert registered.json()["role"] == "admin"

        login = await http.post(
            "/api/auth/login", json={"email": "new@example.com", "password": "a long password"}
        )
        assert login.status_code == 200
        secret = refresh_secret(login)
        http.cookies.clear()

        refreshed = await http.post(
            "/api/auth/refresh", headers={"Cookie": f"relaychat_refresh={secret}"}
        )
        assert refreshed.status_code == 200
        assert refresh_secret(refreshed) != secret
        http.cookies.clear()
        auth = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}

        # A conversation id naming a phone number is the thread of whoever has that number.
        phone = {"phone_number": "+14155552671"}
        assert (await http.patch("/api/user", json=phone, headers=auth)).status_code == 200
        convo = await http.post(
            "/api/convos", json={"conversation_id": "sms-+14155552671"}, headers=auth
        )
        assert convo.status_code == 201
        path = "/api/messages/sms-+14155552671"
        first = (await http.post(path, json={"text": "first"}, headers=auth)).json()["message"]
        second = (
            await http.post(
                path, json={"content": [{"type": "text", "text": "second"}]}, headers=auth
            )
        ).json()["message"]
        listed = (await http.get(path, headers=auth)).json()["messages"]
        assert [(m["text"], m["parent_message_id"]) for m in listed] == [
            ("first", None),
            ("second", first["message_id"]),
        ]
        assert listed[1]["message_id"] == second["message_id"]

        await http.post(
            "/api/auth/register",
            json={"email": "other@example.com", "password": "another password", "name": "O"},
        )
        other_login = await http.post(
            "/api/auth/login", json={"email": "other@example.com", "password": "another password"}
        )
        http.cookies.clear()
        other = {"Authorization": f"Bearer {other_login.json()['access_token']}"}
        for response in (
            await http.get("/api/convos/sms-+14155552671", headers=other),
            await http.get(path, headers=other),
        ):
            assert response.status_code == 404
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["code"] == "conversation_not_found"

        # The generated JWT secret was kept in the data dir, readable only by its owner.
        secret_file = tmp_path / "jwt_secret"
        assert secret_file.exists()
        assert secret_file.stat().st_mode & 0o077 == 0


async def test_placeholder_jwt_secret_refuses_to_start(
    clean_backend: Backend, tmp_path: Path
) -> None:
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}live:")
    env["JWT_SECRET"] = "changeme"
    with pytest.raises(RuntimeError, match="exited early"):
        async with running_server(env, startup_seconds=20):
            pass
    log = await asyncio.to_thread(lambda: next(tmp_path.glob("server-*.log")).read_text())
    assert "JWT_SECRET is a placeholder" in log
