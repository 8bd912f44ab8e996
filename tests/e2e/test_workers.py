"""Real server processes: recovery after a crash, and two workers sharing PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaychat.devtools.fake_llm import FakeLLM
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.live import free_port, running_server, server_env, write_llm_config
from tests.support.sse_client import collect_until

pytestmark = pytest.mark.server

SLOW_REPLY = " ".join(f"w{i}" for i in range(2000))
SLOW = f'!fake {{"token_delay_ms": 10, "reply": "{SLOW_REPLY}"}}\nplease take your time'


def worker_env(backend: Backend, data_dir: Path, fake: FakeLLM, tag: str) -> dict[str, str]:
    env = server_env(backend, data_dir, f"{REDIS_PREFIX_ROOT}{tag}:")
    env["RELAYCHAT_CONFIG"] = str(write_llm_config(data_dir / "relaychat.yaml", fake))
    env["GENERATION_HEARTBEAT_SECONDS"] = "0.2"
    env["GENERATION_LEASE_SECONDS"] = "1"
    # Both workers must sign and accept the same tokens.
    env["JWT_SECRET"] = "workers-share-this-secret-0123456789abcdef"
    return env


async def signup(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    await http.post(
        "/api/auth/register", json={"email": email, "password": "password123", "name": "W"}
    )
    login = await http.post("/api/auth/login", json={"email": email, "password": "password123"})
    http.cookies.clear()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def generation(http: httpx.AsyncClient, auth: dict[str, str], gid: str) -> dict[str, Any]:
    state: dict[str, Any] = (await http.get(f"/api/generations/{gid}", headers=auth)).json()
    return state


async def wait_for(predicate: Any, guard: int = 400) -> None:
    for _ in range(guard):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never became true")


async def test_generation_of_a_killed_server_is_marked_unfinished_at_next_start(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    env = worker_env(clean_backend, tmp_path, fake_llm, "crash")
    port = free_port()
    async with running_server(env, port=port) as url, httpx.AsyncClient(base_url=url) as http:
        auth = await signup(http, "crash@example.com")
        cid = (await http.post("/api/convos", json={"endpoint": "fake"}, headers=auth)).json()[
            "conversation_id"
        ]
        async with http.stream("GET", "/api/events", headers=auth) as stream:
            posted = (
                await http.post(f"/api/messages/{cid}", json={"text": SLOW}, headers=auth)
            ).json()
            seen = await collect_until(stream, lambda e: e.event == "message.delta")
            last_seen_id = seen[-1].id

        async def text_was_saved() -> bool:
            messages = (await http.get(f"/api/messages/{cid}", headers=auth)).json()["messages"]
            return bool(messages[-1]["text"])

        await wait_for(text_was_saved)
        # Die without any cleanup, as a crash or an OOM kill would.
        pid = int((tmp_path / f"server-{port}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)

    async with running_server(env) as url, httpx.AsyncClient(base_url=url) as http:

        async def interrupted() -> bool:
            state = await generation(http, auth, posted["generation_id"])
            return bool(state["status"] == "interrupted")

        await wait_for(interrupted)
        reply = (await http.get(f"/api/messages/{cid}", headers=auth)).json()["messages"][-1]
        assert reply["status"] == "unfinished"
        assert reply["text"].startswith("w0")
        assert "interrupted" in reply["error"]
        async with http.stream(
            "GET", "/api/events", headers={**auth, "Last-Event-ID": last_seen_id or ""}
        ) as stream:
            if clean_backend.redis_url:
                # The event log lives in Redis: the reconnecting tab is told what happened.
                seen = await collect_until(stream, lambda e: e.event == "generation.aborted")
                assert seen[-1].data["reason"] == "interrupted"
            else:
                # A new process has a new in-memory log: the tab is told to reload.
                seen = await collect_until(stream, lambda e: e.event == "reset")
                assert seen[0].event == "reset"


async def test_two_workers_share_events_and_aborts(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    if clean_backend.redis_url is None:
        pytest.skip("several workers need the shared backend (PostgreSQL + Redis)")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    env_a = worker_env(clean_backend, tmp_path / "a", fake_llm, "shared")
    env_b = worker_env(clean_backend, tmp_path / "b", fake_llm, "shared")
    async with (
        running_server(env_a) as url_a,
        running_server(env_b) as url_b,
        httpx.AsyncClient(base_url=url_a) as a,
        httpx.AsyncClient(base_url=url_b) as b,
    ):
        auth = await signup(a, "two@example.com")
        cid = (await b.post("/api/convos", json={"endpoint": "fake"}, headers=auth)).json()[
            "conversation_id"
        ]
        async with a.stream("GET", "/api/events", headers=auth) as stream:
            posted = (
                await b.post(f"/api/messages/{cid}", json={"text": "hello"}, headers=auth)
            ).json()
            seen = await collect_until(
                stream,
                lambda e: (
                    e.event == "message.completed"
                    and e.data["message_id"] == posted["response_message_id"]
                ),
            )
        stored = (await a.get(f"/api/messages/{cid}", headers=auth)).json()["messages"][-1]
        assert seen[-1].data["message"]["text"] == stored["text"] == fake_llm.state.config.reply

        slow = (await b.post(f"/api/messages/{cid}", json={"text": SLOW}, headers=auth)).json()

        async def streaming() -> bool:
            messages = (await a.get(f"/api/messages/{cid}", headers=auth)).json()["messages"]
            return bool(messages[-1]["text"])

        await wait_for(streaming)
        aborted = await a.post(f"/api/generations/{slow['generation_id']}/abort", headers=auth)
        assert aborted.status_code == 200, aborted.text
        assert aborted.json()["status"] == "aborted"
        reply = (await b.get(f"/api/messages/{cid}", headers=auth)).json()["messages"][-1]
        assert reply["status"] == "unfinished"
        assert 0 < len(reply["text"]) < len(SLOW_REPLY)
