"""Deliveries survive a restart: a retry pending when one server process stops is made by the
next."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.factories import make_conversation, make_user
from tests.support.live import running_server, server_env
from tests.support.webhooks import Receiver, delivery_state, register


@pytest.mark.server
async def test_a_restart_between_attempts_loses_nothing(
    clean_backend: Backend, tmp_path: Path, receiver: Receiver
) -> None:
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}restart:")
    env.update(WEBHOOK_ALLOW_PRIVATE_NETWORKS="true", WEBHOOK_RETRY_SCHEDULE="0,2,2")
    receiver.script = [(500, {})]
    async with running_server(env) as base, httpx.AsyncClient(base_url=base) as http:
        user = await make_user(http)
        hook = await register(http, user, receiver, events=["message.created"])
        cid = (await make_conversation(http, user))["conversation_id"]
        sent = await http.post(
            f"/api/messages/{cid}",
            json={"content": "survive", "respond": False},
            headers=user.headers,
        )
        assert sent.status_code == 201
        await receiver.wait_for(1)
        webhook_id = receiver.deliveries[0].webhook_id
        await delivery_state(
            http, user.headers, hook["id"], webhook_id, until=lambda e: e["attempts"] == 1
        )
    # Stopped with the retry pending; a new server process picks it up.
    assert len(receiver.deliveries) == 1
    async with running_server(env) as base, httpx.AsyncClient(base_url=base) as http:
        await receiver.wait_for(1, accepted=True)
        entry = await delivery_state(
            http, user.headers, hook["id"], webhook_id, until=lambda e: e["status"] != "pending"
        )
        await asyncio.sleep(2.5)  # a second copy would arrive on the next poll
    assert entry["status"] == "delivered" and entry["attempts"] == 2
    assert [d.status for d in receiver.deliveries] == [500, 200]
    assert {d.webhook_id for d in receiver.deliveries} == {webhook_id}
    assert all(d.verified for d in receiver.deliveries)
