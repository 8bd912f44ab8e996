"""Real server processes: recovery after a crash, and two workers sharing PostgreSQL + Redis
(events and aborts, statistics and metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

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


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def test_stats_and_metrics_count_what_both_workers_served(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    if clean_backend.redis_url is None:
        pytest.skip("several workers need the shared backend (PostgreSQL + Redis)")
    env = worker_env(clean_backend, tmp_path, fake_llm, "stats")
    # No keep-alive: every request opens a connection, which either worker may accept.
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with (
        running_server(env, "--workers", "2") as url,
        httpx.AsyncClient(base_url=url, limits=fresh, timeout=30) as http,
    ):
        admin = await signup(http, "admin@example.com")
        alice = await signup(http, "alice@example.com")
        cid = (await http.post("/api/convos", json={"endpoint": "fake"}, headers=alice)).json()[
            "conversation_id"
        ]
        key = (await http.post("/api/keys", json={"name": "k"}, headers=alice)).json()["secret"]

        async def external() -> str:
            response = await http.post(
                f"/api/messages/{cid}",
                json={"role": "external", "content": "hi", "respond": True},
                headers={"x-api-key": key},
            )
            assert response.status_code == 202, response.text
            return str(response.json()["generation_id"])

        async def pids() -> set[str]:
            # Each reply runs on the worker that accepted its request: host:pid:tag.
            async with clean_backend.engine.connect() as conn:
                workers = (await conn.execute(text("SELECT worker_id FROM generations"))).all()
            return {worker.split(":")[1] for (worker,) in workers}

        generations: list[str] = []
        for _ in range(10):
            generations += await asyncio.gather(*(external() for _ in range(10)))
            if len(await pids()) == 2:
                break
        assert len(await pids()) == 2, "one worker accepted every connection"
        for gid in generations:

            async def done(gid: str = gid) -> bool:
                return bool((await generation(http, alice, gid))["status"] == "completed")

            await wait_for(done)
        sent = len(generations)

        async def counted() -> bool:
            body = (await http.get("/api/stats", headers=admin)).json()
            return bool(
                body["external"]["totals"]["accepted"] == sent
                and body["replies"]["totals"]["completed"] == sent
            )

        await wait_for(counted)
        # Whichever worker answers a scrape, it counts both workers' requests.
        for _ in range(6):
            scraped = (await http.get("/metrics")).text
            accepted = metric_sum(scraped, "relaychat_external_messages_total", outcome="accepted")
            assert accepted == sent
            completed = metric_sum(scraped, "relaychat_generations_total", status="completed")
            assert completed == sent

        async with contextlib.AsyncExitStack() as streams:
            for _ in range(4):
                client = await streams.enter_async_context(
                    httpx.AsyncClient(base_url=url, timeout=30)
                )
                opened = await streams.enter_async_context(
                    client.stream("GET", "/api/events", headers=alice)
                )
                assert opened.status_code == 200

            async def four_open() -> bool:
                body = (await http.get("/api/stats", headers=admin)).json()
                scraped = (await http.get("/metrics")).text
                return (
                    body["streams"]["open"] == 4
                    and metric_sum(scraped, "relaychat_open_event_streams") == 4
                )

            await wait_for(four_open)
