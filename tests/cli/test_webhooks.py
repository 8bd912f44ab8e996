"""`relaychat webhooks`, run as an operator would (in-process), against a real server process."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.cli import relaychat_async as cli
from tests.support.live import running_server, server_env
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.server

SECRET = re.compile(r"^secret: (whsec_\S+)$", re.MULTILINE)
HOOK_ID = re.compile(r"^created webhook (\S+) ->", re.MULTILINE)


async def test_create_list_delete_and_a_signed_callback(
    clean_backend: Backend, tmp_path: Path, receiver: Receiver
) -> None:
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}clihooks:")
    env["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "true"
    made = await cli(
        env,
        "users",
        "create",
        "--email",
        "ops@example.com",
        "--name",
        "Ops",
        stdin="a long password\n",
    )
    assert made.exit_code == 0, made.stderr

    refused = await cli(
        env,
        "webhooks",
        "create",
        "--owner",
        "ops@example.com",
        "--url",
        receiver.url,
        "--event",
        "nope",
    )
    assert refused.exit_code == 1 and "unknown event type" in refused.stderr

    created = await cli(
        env,
        "webhooks",
        "create",
        "--owner",
        "ops@example.com",
        "--url",
        receiver.url,
        "--event",
        "message.created",
    )
    assert created.exit_code == 0, created.stderr
    secret = SECRET.search(created.stdout)
    hook_id = HOOK_ID.search(created.stdout)
    assert secret and hook_id
    receiver.secret = secret.group(1)

    listed = await cli(env, "webhooks", "list")
    assert hook_id.group(1) in listed.stdout and "enabled" in listed.stdout
    assert receiver.secret not in listed.stdout

    async with running_server(env) as base, httpx.AsyncClient(base_url=base) as http:
        login = await http.post(
            "/api/auth/login", json={"email": "ops@example.com", "password": "a long password"}
        )
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        cid = (await http.post("/api/convos", json={}, headers=auth)).json()["conversation_id"]
        sent = await http.post(
            f"/api/messages/{cid}", json={"content": "hello", "respond": False}, headers=auth
        )
        assert sent.status_code == 201
        await receiver.wait_for(1)
    [delivery] = receiver.deliveries
    assert delivery.verified
    assert delivery.payload["data"]["message"]["text"] == "hello"

    deleted = await cli(env, "webhooks", "delete", hook_id.group(1))
    assert deleted.exit_code == 0, deleted.stderr
    assert hook_id.group(1) not in (await cli(env, "webhooks", "list")).stdout
    missing = await cli(env, "webhooks", "delete", hook_id.group(1))
    assert missing.exit_code == 1
