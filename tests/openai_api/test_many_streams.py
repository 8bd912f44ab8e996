"""Many streamed calls of one key at once: each caller gets its whole reply, however many
events the owner's other replies publish meanwhile, and the owner's tabs see them all."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.realtime.bus import Envelope
from relaychat.services import Services
from relaychat.settings import Settings
from tests.support.backends import Backend
from tests.support.factories import make_key, make_user
from tests.support.openai_sdk import sdk
from tests.support.settings import llm_settings

STREAMS = 16
TOKENS = 40


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    # A log of two events per user: a call's own events roll off it before its reply has
    # begun, so a reply read back from the log would be lost.
    return llm_settings(backend, tmp_path, fake_llm, event_log_size=2)


def _data(envelope: Envelope) -> dict[str, object]:
    data: dict[str, object] = json.loads(envelope.frame.partition(b"data: ")[2])
    return data


async def test_concurrent_streams_of_one_key_each_get_their_whole_reply(
    client: httpx.AsyncClient, live_url: str, services: Services
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    replies = [" ".join(f"r{n}w{i}" for i in range(TOKENS)) for n in range(STREAMS)]

    async def call(reply: str) -> str:
        directive = "!fake " + json.dumps({"reply": reply, "token_delay_ms": 2})
        async with sdk(live_url, key.secret) as openai:
            stream = await openai.chat.completions.create(
                model="fake/fake-model",
                messages=[{"role": "user", "content": f"{directive}\nhello"}],
                stream=True,
            )
            chunks = [chunk async for chunk in stream]
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    # An open tab of the owner, live: every reply reaches it.
    deltas: dict[str, list[str]] = defaultdict(list)
    completed: dict[str, str] = {}

    async def tab() -> None:
        async with services.bus.subscribe(owner.id) as events:
            async for envelope in events:
                data = _data(envelope)
                if envelope.type == "message.delta":
                    deltas[str(data["message_id"])].append(str(data["delta"]))
                elif envelope.type == "message.completed":
                    message = data["message"]
                    assert isinstance(message, dict)
                    if message["role"] == "assistant":
                        completed[str(data["message_id"])] = str(message["text"])
                        if len(completed) == STREAMS:
                            return

    watching = asyncio.create_task(tab())
    try:
        assert await asyncio.gather(*(call(reply) for reply in replies)) == replies
        async with asyncio.timeout(10):
            await watching
    finally:
        watching.cancel()
    assert sorted(completed.values()) == sorted(replies)
    # A reply that ends before its rows are written reaches the tabs whole, at its end;
    # what a longer one streamed to them before is the start of it.
    assert all(text.startswith("".join(deltas[m])) for m, text in completed.items())
