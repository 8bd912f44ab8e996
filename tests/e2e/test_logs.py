"""A real server's log at debug level, through a whole run (sign-up, a key, a webhook, an
external message answered by the model and called back, an SMS through a Twilio channel
answered by SMS): every line is one JSON object, the lines an operator looks for are there,
one request id leads from the access line to the generation and its callback, and no secret
the run used appears anywhere."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.devtools.fake_twilio import FakeTwilio
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.factories import DEFAULT_PASSWORD, make_conversation, make_user
from tests.support.keys import create_key
from tests.support.live import running_server, server_env, write_llm_config
from tests.support.twilio import AUTH_TOKEN, fixture_form, make_channel, post_signed, sent_messages
from tests.support.webhooks import Receiver, register

WRONG_PASSWORD = "wrong horse battery staple"
# Sent from 127.0.0.1, which FORWARDED_ALLOW_IPS trusts by default: the server keeps it.
PROXY_REQUEST_ID = "lb-e2e.42"
FAKE_ENDPOINT_KEY = "fake-key"  # the key write_llm_config gives the fake endpoints
# Some receivers take their token in the URL: the URL is a secret too (httpx logs the URLs it
# requests at info).
URL_TOKEN = "url-token-5d1c0b6e9a"


@pytest.mark.server
async def test_a_whole_run_logs_no_secret(
    clean_backend: Backend,
    tmp_path: Path,
    fake_llm: FakeLLM,
    receiver: Receiver,
    fake_twilio: FakeTwilio,
) -> None:
    config = write_llm_config(tmp_path / "relaychat.yaml", fake_llm)
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}logs:", config=config)
    env.update(LOG_LEVEL="debug", LOG_FORMAT="json", WEBHOOK_ALLOW_PRIVATE_NETWORKS="true")
    async with running_server(env) as base, httpx.AsyncClient(base_url=base) as http:
        user = await make_user(http)
        receiver.url = f"{receiver.url}?token={URL_TOKEN}"
        await register(http, user, receiver, events=["message.completed"])
        key = await create_key(http, user)
        cid = (await make_conversation(http, user, endpoint="fake", model="fake-model"))[
            "conversation_id"
        ]
        sent = await http.post(
            f"/api/messages/{cid}",
            json={"role": "external", "content": "hello", "metadata": {"source": "sms"}},
            headers={
                "x-api-key": key["secret"],
                "prefer": "wait=30",
                "x-request-id": PROXY_REQUEST_ID,
            },
        )
        assert sent.status_code in (200, 201), sent.text
        assert sent.headers["x-request-id"] == PROXY_REQUEST_ID
        await receiver.wait_for(1)
        # The delivery's line is written once its attempt is over, a moment after it arrived.
        await _logged(tmp_path, "outbox webhook message.completed")
        # An SMS through a Twilio channel, answered by SMS: the channel's auth token signs
        # the inbound request and authenticates the reply to Twilio's API.
        channel = await make_channel(http, user, fake_twilio, public_url=base)
        inbound = await post_signed(http, channel["webhook_url"], fixture_form("inbound__sms"))
        assert inbound.status_code == 200, inbound.text
        await sent_messages(fake_twilio)
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
        "webhook URL token": URL_TOKEN,
        "Twilio auth token": AUTH_TOKEN,
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

    # One id from the access line to the generation that answered and to its callback.
    trail = [e for e in entries if e.get("request_id") == PROXY_REQUEST_ID]
    generation_id = sent.json()["generation_id"]
    ended = next(e for e in trail if e["message"].startswith(f"generation {generation_id} c"))
    assert ended["message"] == f"generation {generation_id} completed on fake (stop)"
    assert (ended["generation_id"], ended["conversation_id"]) == (generation_id, cid)
    assert (ended["user_id"], ended["key_id"]) == (user.id, key["key"]["id"])
    assert posted["request_id"] == PROXY_REQUEST_ID and posted["generation_id"] == generation_id
    (delivery,) = [
        d
        for d in receiver.deliveries
        if d.payload["type"] == "message.completed"
        and d.payload["data"]["message"]["conversation_id"] == cid
    ]
    delivered = next(e for e in trail if e["logger"] == "relaychat.workers.outbox")
    assert delivery.webhook_id in delivered["message"] and " delivered " in delivered["message"]
    assert delivered["user_id"] == user.id
    assert {e["logger"] for e in trail} >= {
        "relaychat.access",
        "relaychat.domain.answering.runner",
        "relaychat.workers.outbox",
    }


async def _logged(directory: Path, text: str) -> None:
    """Until the server's log (in `directory`) holds `text` (bounded: a hang fails)."""
    for _ in range(300):
        if any(text in p.read_text() for p in directory.glob("server-*.log")):  # noqa: ASYNC240
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the server never logged {text!r}")
