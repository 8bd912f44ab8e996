"""Refused unauthenticated requests: limited per client address, audited within a bound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from relaychat.app import create_app
from relaychat.devtools.fake_llm import FakeLLM
from relaychat.gateway.refusals import address_bucket
from relaychat.services import Services
from relaychat.settings import Settings
from tests.support.backends import Backend, row_counts
from tests.support.settings import VERBATIM_KEY, llm_settings

LIMIT = 5
FLOOD = 60
BODY = {"role": "external", "content": "hi"}


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    return llm_settings(backend, tmp_path, fake_llm, unauthenticated_rate_limit=f"{LIMIT}/minute")


def _client(services: Services, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(services=services), client=(address, 4711))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


@pytest.fixture
async def attacker(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(services, "203.0.113.9") as http:
        yield http


def _bad_credentials(i: int) -> dict[str, str]:
    """No key, unknown keys in both headers, a managed-looking key: every kind of refusal."""
    return [
        {},
        {"x-api-key": f"wrong-{i}"},
        {"authorization": f"Bearer wrong-{i}"},
        {"x-api-key": f"rck_{i:08d}_{'x' * 40}"},
    ][i % 4]


async def test_a_flood_of_bad_keys_is_throttled_and_writes_a_bounded_audit(
    services: Services, backend: Backend, attacker: httpx.AsyncClient
) -> None:
    statuses = []
    for i in range(FLOOD):
        response = await attacker.post("/api/messages/c1", json=BODY, headers=_bad_credentials(i))
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "rate_limited"
            assert int(response.headers["retry-after"]) >= 1
    assert all(status in (401, 403) for status in statuses[:LIMIT]), statuses
    assert statuses[LIMIT:] == [429] * (FLOOD - LIMIT)
    await services.audit.flush()
    # The refusals within the limit, plus one row saying the address is being throttled.
    assert (await row_counts(backend))["audit_events"] == LIMIT + 1


async def test_threaded_and_twilio_paths_share_the_bound(
    services: Services, backend: Backend, attacker: httpx.AsyncClient
) -> None:
    for i in range(FLOOD):
        if i % 2:
            await attacker.post("/api/external/messages", json=BODY)
        else:
            await attacker.post(
                f"/api/channels/twilio/nope{i}",
                data={"Body": "hi"},
                headers={"x-twilio-signature": "x"},
            )
    last = await attacker.post("/api/external/messages", json=BODY)
    assert last.status_code == 429
    await services.audit.flush()
    assert (await row_counts(backend))["audit_events"] == LIMIT + 1


async def test_a_valid_key_and_other_addresses_are_not_throttled(
    services: Services, backend: Backend, attacker: httpx.AsyncClient
) -> None:
    for i in range(FLOOD):
        await attacker.post("/api/messages/c1", json=BODY, headers=_bad_credentials(i))
    # The key is authenticated before the limit is consulted: only refusals count.
    valid = await attacker.post(
        "/api/external/messages",
        json={**BODY, "metadata": {"source": "sms", "phoneNumber": "+14155552671"}},
        headers={"x-api-key": VERBATIM_KEY},
    )
    assert valid.status_code != 429, valid.text
    async with _client(services, "198.51.100.7") as neighbour:
        refused = await neighbour.post("/api/messages/c1", json=BODY)
    assert refused.status_code == 401


def test_ipv6_addresses_count_by_their_64() -> None:
    assert address_bucket("2001:db8:1:2::1") == address_bucket("2001:db8:1:2:ffff::9")
    assert address_bucket("2001:db8:1:2::1") != address_bucket("2001:db8:1:3::1")
    assert address_bucket("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_bucket(None) == "unknown"
