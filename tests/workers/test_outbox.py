"""Retries on the Standard Webhooks schedule, travelling through it with an injected clock; and
several workers claiming together never deliver one row twice."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.types import utcnow
from relaychat.workers.outbox import OutboxWorker
from relaychat.workers.webhook_sender import WebhookSender
from tests.support.backends import Backend
from tests.support.factories import TestUser, make_conversation, make_user
from tests.support.settings import webhook_settings
from tests.support.webhooks import Receiver, delivery_state, register


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    """Receivers on loopback allowed, as in every webhook test."""
    return webhook_settings(backend, tmp_path, fake_llm)


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock(services: Services) -> Clock:
    travel = Clock()
    services.outbox.clock = travel
    return travel


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def one_event(client: httpx.AsyncClient, user: TestUser) -> None:
    """Something that causes exactly one `message.created` callback."""
    cid = (await make_conversation(client, user))["conversation_id"]
    response = await client.post(
        f"/api/messages/{cid}", json={"content": "note", "respond": False}, headers=user.headers
    )
    assert response.status_code == 201


async def setup(
    client: httpx.AsyncClient, receiver: Receiver, *script: tuple[int, dict[str, str]]
) -> tuple[TestUser, dict[str, Any]]:
    user = await make_user(client)
    hook = await register(client, user, receiver, events=["message.created"])
    receiver.script = list(script)
    await one_event(client, user)
    await receiver.wait_for(1)
    return user, hook


async def settled(
    client: httpx.AsyncClient, user: TestUser, hook: dict[str, Any], receiver: Receiver, n: int
) -> dict[str, Any]:
    """The delivery once its `n`th attempt is recorded."""
    return await delivery_state(
        client,
        user.headers,
        hook["id"],
        receiver.deliveries[0].webhook_id,
        until=lambda e: e["attempts"] >= n,
    )


async def test_failures_are_retried_on_schedule_then_delivered(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, clock: Clock
) -> None:
    user, hook = await setup(client, receiver, (500, {}), (503, {}))
    first = await settled(client, user, hook, receiver, 1)
    assert first["status"] == "pending" and first["last_status_code"] == 500
    wait = at(first["next_attempt_at"]) - at(first["last_attempt_at"])
    assert timedelta(seconds=5) <= wait <= timedelta(seconds=5.5)  # 5 s, plus up to 10 % jitter
    assert await services.outbox.run_once() == 0  # not due yet

    clock.advance(6)
    services.outbox.doorbell.ring()
    second = await settled(client, user, hook, receiver, 2)
    assert second["last_status_code"] == 503
    wait = at(second["next_attempt_at"]) - at(second["last_attempt_at"])
    assert timedelta(minutes=5) <= wait <= timedelta(minutes=5.5)

    clock.advance(331)
    services.outbox.doorbell.ring()
    third = await settled(client, user, hook, receiver, 3)
    assert third["status"] == "delivered" and third["last_status_code"] == 200
    assert [d.status for d in receiver.deliveries] == [500, 503, 200]
    detail = await client.get(
        f"/api/webhooks/{hook['id']}/deliveries/{third['id']}", headers=user.headers
    )
    log = detail.json()["attempts_log"]
    assert [(a["status_code"], a["error"]) for a in log] == [
        (500, "HTTP 500"),
        (503, "HTTP 503"),
        (200, None),
    ]
    assert log[0]["response_body"] == "no"
    assert len({d.webhook_id for d in receiver.deliveries}) == 1
    assert len({d.body for d in receiver.deliveries}) == 1
    assert all(d.verified for d in receiver.deliveries)


async def test_retry_after_is_honoured(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, clock: Clock
) -> None:
    user, hook = await setup(client, receiver, (429, {"Retry-After": "1000"}))
    entry = await settled(client, user, hook, receiver, 1)
    wait = at(entry["next_attempt_at"]) - at(entry["last_attempt_at"])
    assert wait >= timedelta(seconds=1000)
    clock.advance(900)
    assert await services.outbox.run_once() == 0


async def test_a_redirect_is_a_failure_and_not_followed(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, clock: Clock
) -> None:
    user, hook = await setup(client, receiver, (302, {"location": "/hook"}))
    entry = await settled(client, user, hook, receiver, 1)
    assert entry["status"] == "pending" and entry["last_status_code"] == 302
    assert len(receiver.deliveries) == 1


async def test_gone_disables_the_endpoint(
    client: httpx.AsyncClient,
    services: Services,
    receiver: Receiver,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="relaychat.workers.webhook_sender")
    user, hook = await setup(client, receiver, (410, {}))
    entry = await settled(client, user, hook, receiver, 1)
    assert entry["status"] == "failed"
    state = (await client.get(f"/api/webhooks/{hook['id']}", headers=user.headers)).json()
    assert state["enabled"] is False
    assert "410" in state["disabled_reason"]
    # Logged for the operator by id and owner, never by URL.
    (line,) = [r.getMessage() for r in caplog.records if r.name.endswith("webhook_sender")]
    assert line.startswith(f"webhook endpoint {hook['id']} of user {user.id} disabled: ")
    assert receiver.url not in line
    await one_event(client, user)  # nothing is queued for a disabled endpoint
    listed = await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=user.headers)
    assert len(listed.json()["deliveries"]) == 1


async def test_the_last_failure_ends_the_schedule(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, clock: Clock
) -> None:
    services.outbox.schedule = [0, 5]
    user, hook = await setup(client, receiver, (500, {}), (500, {}))
    await settled(client, user, hook, receiver, 1)
    clock.advance(6)
    services.outbox.doorbell.ring()
    entry = await settled(client, user, hook, receiver, 2)
    assert entry["status"] == "failed" and entry["next_attempt_at"] is None


async def test_an_endpoint_failing_for_days_is_disabled_and_says_so(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, clock: Clock
) -> None:
    services.outbox.senders["webhook"].disable_after = timedelta(minutes=5)  # type: ignore[attr-defined]
    user, hook = await setup(client, receiver, (500, {}), (500, {}), (500, {}))
    await settled(client, user, hook, receiver, 1)
    clock.advance(6)
    services.outbox.doorbell.ring()
    await settled(client, user, hook, receiver, 2)
    state = (await client.get(f"/api/webhooks/{hook['id']}", headers=user.headers)).json()
    assert state["enabled"] is True and state["failing_since"] is not None
    clock.advance(331)
    services.outbox.doorbell.ring()
    await settled(client, user, hook, receiver, 3)
    state = (await client.get(f"/api/webhooks/{hook['id']}", headers=user.headers)).json()
    assert state["enabled"] is False
    assert state["disabled_reason"].startswith("every delivery failed since")

    revived = await client.patch(
        f"/api/webhooks/{hook['id']}", json={"enabled": True}, headers=user.headers
    )
    assert revived.json()["failing_since"] is None


async def test_redeliver_sends_the_same_message_again(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, clock: Clock
) -> None:
    user, hook = await setup(client, receiver)
    entry = await settled(client, user, hook, receiver, 1)
    assert entry["status"] == "delivered"
    again = await client.post(
        f"/api/webhooks/{hook['id']}/deliveries/{entry['id']}/redeliver", headers=user.headers
    )
    assert again.status_code == 202 and again.json()["status"] == "pending"
    await receiver.wait_for(2)
    first, second = receiver.deliveries
    assert first.webhook_id == second.webhook_id and first.body == second.body
    assert second.verified
    missing = await client.post(
        f"/api/webhooks/{hook['id']}/deliveries/msg_nope/redeliver", headers=user.headers
    )
    assert missing.status_code == 404 and missing.json()["code"] == "delivery_not_found"


async def test_redelivering_a_delivery_in_flight_is_409(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, clock: Clock
) -> None:
    gate = asyncio.Event()
    receiver.hold = gate
    user = await make_user(client)
    hook = await register(client, user, receiver, events=["message.created"])
    await one_event(client, user)
    await receiver.wait_for_arrival()
    listed = await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=user.headers)
    [entry] = listed.json()["deliveries"]
    assert entry["status"] == "pending" and entry["in_flight"] is True
    busy = await client.post(
        f"/api/webhooks/{hook['id']}/deliveries/{entry['id']}/redeliver", headers=user.headers
    )
    assert busy.status_code == 409 and busy.json()["code"] == "delivery_in_flight"
    gate.set()
    await receiver.wait_for(1)
    done = await settled(client, user, hook, receiver, 1)
    assert done["status"] == "delivered" and done["in_flight"] is False


async def test_a_new_url_forgets_the_failure_streak(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, clock: Clock
) -> None:
    user, hook = await setup(client, receiver, (500, {}))
    await settled(client, user, hook, receiver, 1)
    state = (await client.get(f"/api/webhooks/{hook['id']}", headers=user.headers)).json()
    assert state["failing_since"] is not None
    moved = await client.patch(
        f"/api/webhooks/{hook['id']}", json={"url": receiver.url + "?v=2"}, headers=user.headers
    )
    assert moved.json()["failing_since"] is None


async def test_deliveries_page_by_cursor(
    client: httpx.AsyncClient, services: Services, receiver: Receiver, clock: Clock
) -> None:
    user = await make_user(client)
    hook = await register(client, user, receiver, events=["message.created"])
    cid = (await make_conversation(client, user))["conversation_id"]
    for n in range(5):
        response = await client.post(
            f"/api/messages/{cid}",
            json={"content": f"n{n}", "respond": False},
            headers=user.headers,
        )
        assert response.status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"before": cursor} if cursor else {})}
        page = (
            await client.get(
                f"/api/webhooks/{hook['id']}/deliveries", params=params, headers=user.headers
            )
        ).json()
        seen += [d["id"] for d in page["deliveries"]]
        cursor = page["next_before"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5


async def test_workers_claiming_together_deliver_each_row_once(
    client: httpx.AsyncClient, services: Services, receiver: Receiver
) -> None:
    user = await make_user(client)
    await register(client, user, receiver, events=["message.created"])
    cid = (await make_conversation(client, user))["conversation_id"]
    await services.outbox.close()  # only the workers below deliver
    for n in range(30):
        response = await client.post(
            f"/api/messages/{cid}",
            json={"content": f"n{n}", "respond": False},
            headers=user.headers,
        )
        assert response.status_code == 201
    sender = WebhookSender(
        services.sessionmaker,
        services.secrets,
        allow_private=True,
        timeout=10,
        disable_after_seconds=3600,
    )
    workers = [
        OutboxWorker(
            services.sessionmaker,
            {"webhook": sender},
            worker_id=f"w{i}",
            schedule=[0, 5],
            concurrency=4,
        )
        for i in range(3)
    ]

    async def drain(worker: OutboxWorker) -> int:
        total = 0
        while handled := await worker.run_once():
            total += handled
        return total

    counts = await asyncio.gather(*(drain(w) for w in workers))
    await sender.aclose()
    assert sum(counts) == 30
    ids = [d.webhook_id for d in receiver.deliveries]
    assert len(ids) == len(set(ids)) == 30
    texts = sorted(d.payload["data"]["message"]["text"] for d in receiver.deliveries)
    assert texts == sorted(f"n{n}" for n in range(30))
