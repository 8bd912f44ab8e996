"""A 2xx means committed: `kill -9` in the middle of a burst of external messages loses
no acknowledged message and leaves no message without its audit row or webhook delivery."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from relaychat.storage.db import create_engine
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.live import free_port, running_server, server_env

pytestmark = pytest.mark.server

SYSTEM_KEY = "kill-under-load-system-key-0123456789"
CLIENTS = 24


async def signup(http: httpx.AsyncClient) -> dict[str, str]:
    body = {"email": "burst@example.com", "password": "password123", "name": "B"}
    await http.post("/api/auth/register", json=body)
    login = await http.post("/api/auth/login", json={k: body[k] for k in ("email", "password")})
    http.cookies.clear()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def burst(
    url: str, cid: str, acknowledged: dict[str, str], stop: asyncio.Event, flowing: asyncio.Event
) -> None:
    """Post from `CLIENTS` connections until the server dies; note every 2xx by text, and
    set `flowing` once 200 were acknowledged."""

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            for i in range(100_000):
                if stop.is_set():
                    return
                label = f"c{n}-{i}"
                try:
                    answer = await http.post(
                        f"/api/messages/{cid}",
                        json={
                            "role": "external",
                            "content": [{"type": "text", "text": label}],
                            "respond": False,
                        },
                        headers={"x-api-key": SYSTEM_KEY},
                    )
                except httpx.TransportError:
                    return  # the server is gone; this post was never acknowledged
                if answer.is_success:
                    acknowledged[label] = answer.json()["message"]["message_id"]
                    if len(acknowledged) >= 200:
                        flowing.set()

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))


async def test_kill_during_a_burst_loses_nothing_acknowledged(
    clean_backend: Backend, tmp_path: Path
) -> None:
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}kill:")
    env["EXTERNAL_MESSAGE_API_KEY"] = SYSTEM_KEY
    port = free_port()
    acknowledged: dict[str, str] = {}
    async with running_server(env, port=port) as url, httpx.AsyncClient(base_url=url) as http:
        auth = await signup(http)
        cid = (await http.post("/api/convos", json={"title": "burst"}, headers=auth)).json()[
            "conversation_id"
        ]
        hook = await http.post(
            "/api/webhooks",
            json={"url": "https://example.com/hook", "events": ["message.created"]},
            headers=auth,
        )
        assert hook.status_code == 201, hook.text
        stop, flowing = asyncio.Event(), asyncio.Event()
        posting = asyncio.create_task(burst(url, cid, acknowledged, stop, flowing))
        await asyncio.wait_for(flowing.wait(), 60)  # killed in full flow
        pid = int((tmp_path / f"server-{port}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        stop.set()
        await posting

    database_url = clean_backend.database_url or f"sqlite+aiosqlite:///{tmp_path / 'relaychat.db'}"
    engine = create_engine(database_url)
    try:
        async with engine.connect() as db:
            stored = {
                row.text: row.id
                for row in await db.execute(
                    text("SELECT id, text FROM messages WHERE conversation_id = :c"), {"c": cid}
                )
            }
            audited = set(
                (
                    await db.execute(
                        text(
                            "SELECT message_id FROM audit_events "
                            "WHERE conversation_id = :c AND outcome = 'accepted'"
                        ),
                        {"c": cid},
                    )
                ).scalars()
            )
            payloads = (
                await db.execute(
                    text("SELECT payload FROM outbox WHERE event_type = 'message.created'")
                )
            ).scalars()
            delivered = [p for p in payloads if cid in p]
    finally:
        await engine.dispose()

    # Every acknowledged message is stored, under the id its caller was given.
    missing = {label for label, mid in acknowledged.items() if stored.get(label) != mid}
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:3]}"
    # Nothing half-stored: each stored message has its audit row and its webhook delivery.
    assert set(stored.values()) == audited
    assert len(delivered) == len(stored)
    assert all(any(mid in p for p in delivered) for mid in stored.values())
