"""A real server's log at debug level, through a whole run (sign-up, a key, a webhook, an
external message answered by the model and called back): every line is one JSON object, the
lines an operator looks for are there, and no secret the run used appears anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaychat.devtools.fake_llm import FakeLLM
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.factories import DEFAULT_PASSWORD, make_conversation, make_user
from tests.support.keys import create_key
from tests.support.live import running_server, server_env, write_llm_config
from tests.support.webhooks import Receiver, register

WRONG_PASSWORD = "wrong horse battery staple"
FAKE_ENDPOINT_KEY = "fake-key"  # the key write_llm_config gives the fake endpoints


@pytest.mark.server
async def test_a_whole_run_logs_no_secret(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    config = write_llm_config(tmp_path / "relaychat.yaml", fake_llm)
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}logs:", config=config)
    env.update(LOG_LEVEL="debug", LOG_FORMAT="json", WEBHOOK_ALLOW_PRIVATE_NETWORKS="true")
    async with running_server(env) as base, httpx.AsyncClient(base_url=base) as http:
        user = await make_user(http)
        await register(http, user, receiver, events=["message.completed"])
        key = await create_key(http, user)
        cid = (await make_conversation(http, user, endpoint="fake", model="fake-model"))[
            "conversation_id"
        ]
        sent = await http.post(
            f"/api/messages/{cid}",
            json={"role": "external", "content": "hello", "metadata": {"source": "sms"}},
            headers={"x-api-key": key["secret"], "prefer": "wait=30"},
        )
        assert sent.status_code in (200, 201), sent.text
        await receiver.wait_for(1)
        refused = await http.post(
            f"/api/messages/{cid}",
            json={"role": "external", "content": "x"},
            headers={"x-api-key": key["secret"][:-4] + "AAAA"},
        )
        bad_login = await http.post(
            "/api/auth/login", json={"email": user.email, "password": WRONG_PASSWORD}
        )
        assert refused.status_code in (401, 403) and bad_login.status_code == 401
        log_path = next(iter(sorted(tmp_path.glob("server-*.log"))))  # noqa: ASYNC240

    secrets = {
        "password": DEFAULT_PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "access token": user.access_token,
        "API key": key["secret"],
        "webhook secret": receiver.secret,
        "endpoint key": FAKE_ENDPOINT_KEY,
        **{f"cookie {name}": value for name, value in user.cookies.items()},
    }
    text = log_path.read_text()
    leaked = [name for name, value in secrets.items() if value and value in text]
    assert leaked == []

    entries: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line]
    messages = [e["message"] for e in entries]
    assert any(m.startswith("relaychat ") and " starting on http://" in m for m in messages)
    access = [e for e in entries if e["logger"] == "relaychat.access"]
    posted = next(e for e in access if e["request_id"] == sent.headers["x-request-id"])
    assert posted["path"] == "/api/messages/{conversation_id}"
    assert posted["user_id"] == user.id and posted["key_id"] == key["key"]["id"]
    assert any(
        e["message"].startswith("external message refused: ")
        and e["request_id"] == refused.headers["x-request-id"]
        for e in entries
    )
