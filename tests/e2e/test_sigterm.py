"""A clean stop: SIGTERM during 20 streaming replies, a burst of external messages and an open
event stream. The server exits 0 without a traceback; every acknowledged message is stored;
every reply is complete, or unfinished with the text it had; the event stream is ended (its
browser reconnects to the next process) instead of holding the stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import bindparam, text

from relaychat.devtools.fake_llm import FakeLLM
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.factories import make_conversation, make_user
from tests.support.live import free_port, running_child, serve_command, server_env, write_llm_config

pytestmark = pytest.mark.server

SYSTEM_KEY = "sigterm-system-key-0123456789abcdef"
WORDS = " ".join(f"word{i}" for i in range(200))
# 200 words at 30 ms: each reply would take 6 s, so all 20 are mid-stream when the signal comes.
SLOW = f'!fake {{"token_delay_ms": 30, "reply": "{WORDS}"}}\ntake your time'
REPLIES = 20
WRITERS = 8


async def post_burst(
    url: str, cid: str, acknowledged: dict[str, str], stop: asyncio.Event, flowing: asyncio.Event
) -> None:
    """Post from `WRITERS` connections until stopped; `flowing` once 50 were acknowledged."""

    async def writer(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            for i in range(100_000):
                if stop.is_set():
                    return
                label = f"w{n}-{i}"
                try:
                    answer = await http.post(
                        f"/api/messages/{cid}",
                        json={"role": "external", "content": label, "respond": False},
                        headers={"x-api-key": SYSTEM_KEY},
                    )
                except httpx.TransportError:
                    return  # the server stopped taking requests: not acknowledged
                if answer.is_success:
                    acknowledged[label] = answer.json()["message"]["message_id"]
                    if len(acknowledged) >= 50:
                        flowing.set()
                else:
                    # A refusal while stopping is fine (never acknowledged); anything else is not.
                    assert answer.status_code == 503, answer.text
                    return

    await asyncio.gather(*(writer(n) for n in range(WRITERS)))


async def read_events(url: str, headers: dict[str, str], ended: asyncio.Event) -> str:
    """The raw event stream until the server ends it."""
    seen: list[str] = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=None) as http,
        http.stream("GET", "/api/events", headers=headers) as stream,
    ):
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in stream.aiter_text():
                seen.append(chunk)
    ended.set()
    return "".join(seen)


async def test_sigterm_mid_stream_loses_nothing(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    config = write_llm_config(tmp_path / "relaychat.yaml", fake_llm)
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}sigterm:", config=config)
    env.update(EXTERNAL_MESSAGE_API_KEY=SYSTEM_KEY, SHUTDOWN_GRACE_SECONDS="5")
    port = free_port()
    acknowledged: dict[str, str] = {}
    replies: list[str] = []
    async with running_child(
        "relaychat",
        serve_command(port),
        port=port,
        env=env,
        log_path=tmp_path / "server.log",
    ) as child:
        url = child.url
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            user = await make_user(http)
            events_ended = asyncio.Event()
            events = asyncio.create_task(read_events(url, user.headers, events_ended))
            burst_cid = (await make_conversation(http, user))["conversation_id"]
            for _ in range(REPLIES):
                cid = (await make_conversation(http, user, endpoint="fake", model="fake-model"))[
                    "conversation_id"
                ]
                sent = await http.post(
                    f"/api/messages/{cid}", json={"text": SLOW}, headers=user.headers
                )
                assert sent.status_code == 202, sent.text[:200]
                replies.append(sent.json()["response_message_id"])
            stop, flowing = asyncio.Event(), asyncio.Event()
            burst = asyncio.create_task(post_burst(url, burst_cid, acknowledged, stop, flowing))
            # The replies under way (6 s each), and the burst flowing.
            await asyncio.wait_for(flowing.wait(), 60)
            os.kill(child.pid, signal.SIGTERM)
            code = await asyncio.wait_for(child.process.wait(), 60)
            stop.set()
            await burst
            await asyncio.wait_for(events_ended.wait(), 10)
            stream = await events
    log = child.log_path.read_text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert stream.startswith("retry: ")  # the browser's reconnect delay, given up front

    async with clean_backend.engine.connect() as db:
        stored = {
            row.text: row.id
            for row in await db.execute(
                text("SELECT id, text FROM messages WHERE conversation_id = :c"), {"c": burst_cid}
            )
        }
        written = {
            row.id: (row.status, row.text)
            for row in await db.execute(
                text("SELECT id, status, text FROM messages WHERE id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": replies},
            )
        }
        running = await db.scalar(text("SELECT count(*) FROM generations WHERE status = 'running'"))

    missing = {label for label, mid in acknowledged.items() if stored.get(label) != mid}
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:3]}"
    assert set(replies) <= set(written)
    for reply_id in replies:
        status, body = written[reply_id]
        assert status in ("complete", "unfinished"), (reply_id, status)
        assert body and WORDS.startswith(body.strip()), (reply_id, status, body[:80])
    # The stop came mid-stream: some replies were cut, with what they had.
    assert any(status == "unfinished" for status, _ in written.values())
    assert running == 0
