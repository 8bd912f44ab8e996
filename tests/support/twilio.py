"""Twilio channel helpers: fixtures signed as Twilio signs them, channels made over the API,
and bounded waits for what reaches the fake Twilio API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from relaychat.devtools.fake_twilio import FakeTwilio, SentMessage
from tests.support.chat import messages_of
from tests.support.factories import TestUser

FIXTURES = Path(__file__).parent.parent / "fixtures" / "twilio"


ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"


AUTH_TOKEN = "f0e1d2c3b4a5968778695a4b3c2d1e0f"


OUR_NUMBER = "+14155550100"


SENDER = "+14155552671"


def fixture_form(name: str, **overrides: str) -> list[tuple[str, str]]:
    """A fixture's fields, in order, with some replaced (or added)."""
    pairs = parse_qsl((FIXTURES / f"{name}.txt").read_text().strip(), keep_blank_values=True)
    pairs = [(k, overrides.pop(k)) if k in overrides else (k, v) for k, v in pairs]
    return pairs + list(overrides.items())


def sign(url: str, pairs: list[tuple[str, str]], token: str = AUTH_TOKEN) -> str:
    params: dict[str, str] = dict(pairs)
    signature: str = RequestValidator(token).compute_signature(url, params)
    return signature


async def post_signed(
    client: httpx.AsyncClient,
    url: str,
    pairs: list[tuple[str, str]],
    *,
    token: str = AUTH_TOKEN,
    signature: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST the form to `url` (absolute, as Twilio requests it), signed with `token`."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", **(extra_headers or {})}
    headers["X-Twilio-Signature"] = signature if signature is not None else sign(url, pairs, token)
    return await client.post(url, content=urlencode(pairs), headers=headers)


def thread(channel: dict[str, Any], source: str = "sms", phone: str = SENDER) -> str:
    """The conversation a channel keeps for a sender: the source, the number, then the first
    12 hex digits of the channel's id (`sms-+14155552671.3f2a9c1b7d4e`)."""
    return f"{source}-{phone}.{channel['id'].replace('-', '')[:12]}"


async def make_channel(
    client: httpx.AsyncClient, user: TestUser, fake: FakeTwilio, **fields: Any
) -> dict[str, Any]:
    body = {
        "type": "twilio",
        "name": "Support line",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "public_url": "https://testserver",
        "endpoint": "fake",
        "api_base_url": fake.url,
        **fields,
    }
    response = await client.post("/api/channels", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def wait_for(
    condition: Callable[[], Any], seconds: float = 15.0, what: str = "condition"
) -> Any:
    """Poll until `condition()` is truthy (bounded: a hang fails instead of blocking)."""
    for _ in range(int(seconds / 0.05)):
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} never happened")


async def sent_messages(fake: FakeTwilio, count: int = 1) -> list[SentMessage]:
    """Wait for `count` messages at the fake Twilio API."""
    await wait_for(lambda: len(fake.messages) >= count, what=f"{count} message(s) at Twilio")
    return fake.messages


async def reply_delivery(
    client: httpx.AsyncClient, user: TestUser, cid: str, state: str
) -> dict[str, Any]:
    """The delivery state of the reply in conversation `cid` once it reads `state`."""
    delivery = None
    for _ in range(300):
        stored = await messages_of(client, user, cid)
        delivery = next(
            (m["metadata"].get("delivery") for m in stored if m["role"] == "assistant"), None
        )
        if delivery and delivery.get("state") == state:
            result: dict[str, Any] = delivery
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"delivery never became {state}: {delivery}")
