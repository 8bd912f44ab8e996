"""GET /api/stats: numbers that match what was done through the real paths, scoped to the
viewer, over a grid of buckets of which none is ever missing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from relaychat.app import create_app
from relaychat.devtools.fake_llm import FakeLLM
from relaychat.domain.access.audit import record_audit
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.audit_hours import hour_of
from relaychat.storage.models import AuditEvent, AuditHour, Generation
from tests.support.backends import Backend
from tests.support.chat import wait_generation
from tests.support.factories import (
    TestUser,
    make_conversation,
    make_key,
    make_sessionless_user,
    make_user,
)
from tests.support.live import serving
from tests.support.settings import llm_settings
from tests.support.webhooks import Receiver, register
from tests.support.workers import second_worker


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    """Receivers on loopback allowed, and a delivery that fails once has failed."""
    return llm_settings(
        backend,
        tmp_path,
        fake_llm,
        webhook_allow_private_networks=True,
        outbox_poll_seconds=0.05,
        webhook_retry_schedule=[0],
    )


async def stats_of(client: httpx.AsyncClient, user: TestUser, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/stats", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear between the closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def external(text: str = "hello") -> dict[str, Any]:
    return {"role": "external", "content": text, "respond": False}


async def test_external_requests_by_outcome_for_each_viewer(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = await make_sessionless_user(client)
    alice = await make_sessionless_user(client)
    bob = await make_sessionless_user(client)
    assert admin.role == "admin" and alice.role == bob.role == "user"
    alice_cid = (await make_conversation(client, alice))["conversation_id"]
    bob_cid = (await make_conversation(client, bob))["conversation_id"]
    alice_key = await make_key(client, alice, rate_limit={"requests": 4, "window": 600})
    bob_key = await make_key(client, bob)

    async def send(cid: str, headers: dict[str, str], status: int) -> None:
        response = await client.post(f"/api/messages/{cid}", json=external(), headers=headers)
        assert response.status_code == status, response.text

    for _ in range(3):
        await send(alice_cid, alice_key.headers, 201)
    await send("nowhere-to-be-found", alice_key.headers, 404)  # the limit's 4th request
    await send(alice_cid, alice_key.headers, 429)  # over the limit
    await send(bob_cid, bob_key.headers, 201)
    await send(bob_cid, {}, 401)  # no key: nobody's
    await services.audit.flush()

    mine = await stats_of(client, alice)
    assert mine["scope"] == "own"
    assert mine["external"]["totals"] == {
        "total": 5,
        "accepted": 3,
        "replayed": 0,
        "refused": 1,
        "rate_limited": 1,
    }
    assert mine["external"]["errors"] == [
        {"code": "conversation_not_found", "count": 1},
        {"code": "rate_limited", "count": 1},
    ]
    series = mine["external"]["series"]
    for outcome in ("accepted", "replayed", "refused", "rate_limited"):
        assert sum(point[outcome] for point in series) == mine["external"]["totals"][outcome]
    # The latencies are those of the audit rows of the accepted requests.
    audit = await client.get(
        "/api/admin/audit", params={"outcome": "accepted"}, headers=admin.headers
    )
    latencies = [e["latency_ms"] for e in audit.json()["events"] if e["api_key_id"] == alice_key.id]
    assert len(latencies) == 3
    processing = mine["external"]["processing_ms"]
    assert processing["exact"] is True
    for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert processing[name] == pytest.approx(percentile_cont(latencies, fraction))

    theirs = await stats_of(client, bob)
    assert theirs["external"]["totals"] == {
        "total": 1,
        "accepted": 1,
        "replayed": 0,
        "refused": 0,
        "rate_limited": 0,
    }
    assert theirs["external"]["errors"] == []

    everything = await stats_of(client, admin)
    assert everything["scope"] == "all"
    assert everything["external"]["totals"] == {
        "total": 7,
        "accepted": 4,
        "replayed": 0,
        "refused": 2,
        "rate_limited": 1,
    }
    assert everything["external"]["errors"] == [
        {"code": "api_key_required", "count": 1},
        {"code": "conversation_not_found", "count": 1},
        {"code": "rate_limited", "count": 1},
    ]

    nothing = await stats_of(client, await make_sessionless_user(client))
    assert nothing["external"]["totals"]["total"] == 0
    assert nothing["external"]["processing_ms"] is None


async def test_requests_through_every_writer_count_alike_by_hours_and_by_rows(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Accepted requests are audited by the group commit, refused and replayed ones by the
    audit writer, others by `record_audit`: each keeps the hourly counts with its rows, and
    the answer by whole hours (from those counts) is the answer by quarters (the rows)."""
    admin = await make_sessionless_user(client)
    alice = await make_sessionless_user(client)
    cid = (await make_conversation(client, alice))["conversation_id"]
    key = await make_key(client, alice, rate_limit={"requests": 5, "window": 600})

    async def send(target: str, headers: dict[str, str], status: int) -> None:
        response = await client.post(f"/api/messages/{target}", json=external(), headers=headers)
        assert response.status_code == status, response.text

    for _ in range(2):
        await send(cid, key.headers, 201)
    replay = {**key.headers, "Idempotency-Key": "again"}
    await send(cid, replay, 201)
    await send(cid, replay, 201)  # replayed
    await send("nowhere-to-be-found", key.headers, 404)
    await send(cid, key.headers, 429)
    await send(cid, {}, 401)
    async with services.sessionmaker() as session:
        await record_audit(
            session,
            method="POST",
            path="/api/messages/c",
            outcome="refused",
            reason="permission_denied",
            status=403,
            latency_ms=1.0,
            key_owner_id=alice.id,
            created_at=datetime.now(UTC) - timedelta(hours=5),
        )
    await services.audit.flush()

    async with services.sessionmaker() as session:
        kept = {
            (h.hour, h.key_owner_id, h.outcome, h.reason): h.n
            for h in (await session.scalars(select(AuditHour))).all()
        }
        counted: dict[tuple[datetime, str, str, str], int] = {}
        for e in (await session.scalars(select(AuditEvent))).all():
            k = (hour_of(e.created_at), e.key_owner_id or "", e.outcome, e.reason or "")
            counted[k] = counted.get(k, 0) + 1
    assert kept == counted and sum(kept.values()) == 8

    for viewer, total in ((admin, 8), (alice, 7)):
        hourly = (await stats_of(client, viewer, window="24h", bucket=3600))["external"]
        rows = (await stats_of(client, viewer, window="24h", bucket=900))["external"]
        assert hourly["totals"] == rows["totals"] and hourly["totals"]["total"] == total
        assert hourly["errors"] == rows["errors"]
        by_hour: dict[datetime, list[int]] = {}
        for point in rows["series"]:
            moment = parse(point["t"])
            sums = by_hour.setdefault(moment.replace(minute=0), [0, 0, 0, 0])
            for i, outcome in enumerate(("accepted", "replayed", "refused", "rate_limited")):
                sums[i] += point[outcome]
        for point in hourly["series"]:
            found = [point[o] for o in ("accepted", "replayed", "refused", "rate_limited")]
            assert found == by_hour.get(parse(point["t"]), [0, 0, 0, 0]), point["t"]
    assert hourly["totals"]["replayed"] == 1 and hourly["totals"]["rate_limited"] == 1


async def test_a_replayed_request_is_counted_apart(
    client: httpx.AsyncClient, services: Services
) -> None:
    owner = await make_sessionless_user(client)
    cid = (await make_conversation(client, owner))["conversation_id"]
    key = await make_key(client, owner)
    headers = {**key.headers, "Idempotency-Key": "same-request"}
    for status in (201, 201):
        response = await client.post(f"/api/messages/{cid}", json=external(), headers=headers)
        assert response.status_code == status, response.text
    await services.audit.flush()
    totals = (await stats_of(client, owner))["external"]["totals"]
    assert (totals["total"], totals["accepted"], totals["replayed"]) == (2, 1, 1)


async def test_replies_by_status_with_their_time_to_first_token(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = await make_user(client)
    alice = await make_user(client)
    bob = await make_user(client)
    cid = (await make_conversation(client, alice, endpoint="fake"))["conversation_id"]
    bob_cid = (await make_conversation(client, bob, endpoint="fake"))["conversation_id"]

    async def reply(user: TestUser, conversation: str, text: str) -> dict[str, Any]:
        response = await client.post(
            f"/api/messages/{conversation}", json={"text": text}, headers=user.headers
        )
        assert response.status_code == 202, response.text
        return await wait_generation(client, user, response.json()["generation_id"])

    finished = [await reply(alice, cid, "hello"), await reply(alice, cid, "again")]
    assert [g["status"] for g in finished] == ["completed", "completed"]
    broken = await reply(alice, cid, '!fake {"fail": "bad_request"}\nplease fail')
    assert broken["status"] == "failed"
    assert (await reply(bob, bob_cid, "hi"))["status"] == "completed"

    mine = await stats_of(client, alice)
    assert mine["replies"]["totals"] == {
        "total": 3,
        "completed": 2,
        "failed": 1,
        "aborted": 0,
        "interrupted": 0,
        "running": 0,
    }
    series = mine["replies"]["series"]
    assert sum(p["completed"] for p in series) == 2
    assert sum(p["failed"] for p in series) == 1
    async with services.sessionmaker() as session:
        rows = (
            await session.scalars(
                select(Generation).where(Generation.id.in_([g["generation_id"] for g in finished]))
            )
        ).all()
    waits = [
        (g.first_token_at - g.started_at).total_seconds() * 1000 for g in rows if g.first_token_at
    ]
    assert len(waits) == 2
    ttft = mine["replies"]["ttft_ms"]
    assert ttft["exact"] is True
    # SQLite's date functions read times to the millisecond.
    assert ttft["p50"] == pytest.approx(percentile_cont(waits, 0.5), abs=1.0)
    assert ttft["p99"] == pytest.approx(percentile_cont(waits, 0.99), abs=1.0)

    everything = await stats_of(client, admin)
    assert everything["replies"]["totals"]["completed"] == 3
    assert everything["replies"]["totals"]["total"] == 4


async def test_a_deleted_conversation_takes_its_kept_replies_from_every_worker(
    client: httpx.AsyncClient, services: Services, clean_backend: Backend, settings: Settings
) -> None:
    alice = await make_user(client)
    cid = (await make_conversation(client, alice, endpoint="fake"))["conversation_id"]

    async def reply() -> None:
        response = await client.post(
            f"/api/messages/{cid}", json={"text": "hi"}, headers=alice.headers
        )
        assert response.status_code == 202, response.text
        await wait_generation(client, alice, response.json()["generation_id"])

    async with (
        second_worker(services, clean_backend, settings) as other,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(services=other)),
            base_url="https://testserver",
        ) as there,
    ):
        # Keepers that take every bucket for finished: what they kept is what they answer.
        for keeper in (services.settled_stats, other.settled_stats):
            keeper.settle_seconds = -86400
        await reply()
        await reply()
        for http in (client, there):
            assert (await stats_of(http, alice))["replies"]["totals"]["completed"] == 2
        await reply()
        assert (await stats_of(client, alice))["replies"]["totals"]["completed"] == 2

        deleted = await client.delete(f"/api/convos/{cid}", headers=alice.headers)
        assert deleted.status_code == 204, deleted.text
        for http in (client, there):
            for _ in range(100):
                if (await stats_of(http, alice))["replies"]["totals"]["completed"] == 0:
                    break
                await asyncio.sleep(0.02)
            assert (await stats_of(http, alice))["replies"]["totals"]["completed"] == 0


async def test_webhook_deliveries_by_status(
    client: httpx.AsyncClient, services: Services, receiver: Receiver
) -> None:
    admin = await make_user(client)
    alice = await make_user(client)
    await register(client, alice, receiver, events=["conversation.created"])
    receiver.script = [(500, {})]
    await make_conversation(client, alice)  # its delivery fails, for good (one attempt)
    await receiver.wait_for(1)
    await make_conversation(client, alice)
    await receiver.wait_for(1, accepted=True)
    receiver.hold = asyncio.Event()
    await make_conversation(client, alice)  # held by the receiver: still pending
    try:
        expected = {"delivered": 1, "failed": 1, "pending": 1}
        for _ in range(200):
            if (await stats_of(client, alice))["webhooks"] == expected:
                break
            await asyncio.sleep(0.05)
        assert (await stats_of(client, alice))["webhooks"] == expected
        assert (await stats_of(client, admin))["webhooks"] == expected
        assert (await stats_of(client, await make_user(client)))["webhooks"] == {
            "delivered": 0,
            "failed": 0,
            "pending": 0,
        }
    finally:
        receiver.hold.set()


async def test_open_streams_of_every_worker(
    client: httpx.AsyncClient,
    services: Services,
    live_url: str,
    clean_backend: Backend,
    settings: Settings,
) -> None:
    admin = await make_user(client)
    alice = await make_user(client)
    bob = await make_user(client)

    async def open_counts() -> tuple[int, int, int]:
        return (
            (await stats_of(client, admin))["streams"]["open"],
            (await stats_of(client, alice))["streams"]["open"],
            (await stats_of(client, bob))["streams"]["open"],
        )

    async def settle(expected: tuple[int, int, int]) -> None:
        for _ in range(200):
            if await open_counts() == expected:
                return
            await asyncio.sleep(0.05)
        assert await open_counts() == expected

    async with (
        second_worker(services, clean_backend, settings) as other,
        serving(create_app(services=other)) as other_url,
        httpx.AsyncClient(timeout=30) as http,
    ):
        async with (
            http.stream("GET", f"{live_url}/api/events", headers=alice.headers) as here,
            http.stream("GET", f"{other_url}/api/events", headers=alice.headers) as there,
            http.stream("GET", f"{other_url}/api/events", headers=bob.headers) as also_there,
        ):
            assert here.status_code == there.status_code == also_there.status_code == 200
            # Everyone's for the admin, their own tabs for the others.
            await settle((3, 2, 1))
        await settle((0, 0, 0))


async def test_every_bucket_is_there_and_rows_land_in_theirs(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = await make_user(client)
    now = datetime.now(UTC)
    async with services.sessionmaker() as session:
        for minutes_ago, latency in ((0, 1.0), (30, 2.0), (30, 4.0), (59, 8.0), (90, 100.0)):
            await record_audit(
                session,
                method="POST",
                path="/api/messages/c",
                outcome="accepted",
                status=201,
                latency_ms=latency,
                created_at=now - timedelta(minutes=minutes_ago),
            )
    body = await stats_of(client, admin, window="1h")
    assert body["window"] == "1h" and body["bucket_seconds"] == 60
    since, until = parse(body["since"]), parse(body["until"])
    assert since.timestamp() % 60 == 0
    assert until - timedelta(hours=1, minutes=1) < since <= until - timedelta(hours=1)
    series = body["external"]["series"]
    assert len(series) == 61
    assert [parse(p["t"]) for p in series] == [
        since + timedelta(minutes=i) for i in range(len(series))
    ]
    assert parse(series[-1]["t"]) <= until < parse(series[-1]["t"]) + timedelta(minutes=1)

    def bucket_of(minutes_ago: int) -> int:
        moment = now - timedelta(minutes=minutes_ago)
        return int((moment - since).total_seconds() // 60)

    counts = [p["accepted"] for p in series]
    expected = [0] * len(series)
    for minutes_ago in (0, 30, 30, 59):  # 90 minutes ago is outside the hour
        expected[bucket_of(minutes_ago)] += 1
    assert counts == expected
    assert body["external"]["processing_ms"]["p50"] == pytest.approx(3.0)
    assert len(body["replies"]["series"]) == len(series)

    wide = await stats_of(client, admin, window="24h", bucket=3600)
    assert wide["bucket_seconds"] == 3600
    assert len(wide["external"]["series"]) == 25
    assert wide["external"]["totals"]["accepted"] == 5
    week = await stats_of(client, admin, window="7d")
    assert week["bucket_seconds"] == 3600 and len(week["external"]["series"]) == 169
    day = await stats_of(client, admin, window="24h")
    assert day["bucket_seconds"] == 900 and len(day["external"]["series"]) == 97


async def test_each_bucket_of_each_outcome_equals_a_count_of_its_rows(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Everyone's acceptances are read as a bucket's rows less the others: in each bucket,
    for the admin and for one owner, every outcome is what a count of the rows gives."""
    admin = await make_user(client)
    alice = await make_user(client)
    # No answer before the rows are in: it would keep their buckets, settled, as empty.
    moment = int(datetime.now(UTC).timestamp()) - 3600
    start = datetime.fromtimestamp(moment - moment % 60 + 600, UTC)
    # (minutes after `start`, seconds, owner, outcome, reason): rows on a bucket's first
    # instant and in its last second, several outcomes in one bucket.
    rows = [
        (5, 0, None, "accepted", None),
        (5, 59, alice.id, "accepted", None),
        (5, 30, alice.id, "replayed", None),
        (6, 0, alice.id, "refused", "rate_limited"),
        (6, 0, None, "refused", "api_key_required"),
        (6, 1, None, "accepted", None),
        (7, 10, alice.id, "refused", "conversation_not_found"),
        (7, 11, alice.id, "accepted", None),
        (7, 12, None, "replayed", None),
    ]
    async with services.sessionmaker() as session:
        for minute, second, owner, outcome, reason in rows:
            await record_audit(
                session,
                method="POST",
                path="/api/messages/c",
                outcome=outcome,
                reason=reason,
                status=201,
                latency_ms=1.0,
                key_owner_id=owner,
                created_at=start + timedelta(minutes=minute, seconds=second),
            )

    def expected(
        since: datetime, size: int, step: int, owner: str | None, outcome: str
    ) -> list[int]:
        counts = [0] * size
        for minute, second, row_owner, row_outcome, reason in rows:
            name = "rate_limited" if reason == "rate_limited" else row_outcome
            if name == outcome and owner in (None, row_owner):
                moment = start + timedelta(minutes=minute, seconds=second)
                counts[int((moment - since).total_seconds() // step)] += 1
        return counts

    # Minutes from the rows; whole hours from the hourly counts (audit_hours).
    for window, bucket in (("1h", 60), ("24h", 3600), ("7d", 3600), ("7d", 7200)):
        for viewer, owner in ((admin, None), (alice, alice.id)):
            body = await stats_of(client, viewer, window=window, bucket=bucket)
            since, series = parse(body["since"]), body["external"]["series"]
            for outcome in ("accepted", "replayed", "refused", "rate_limited"):
                found = [point[outcome] for point in series]
                assert found == expected(since, len(series), bucket, owner, outcome), (
                    window,
                    bucket,
                    viewer.role,
                    outcome,
                )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"window": "2h"}, "window"),
        ({"bucket": "soon"}, "bucket"),
        ({"bucket": 59}, "bucket"),
        ({"window": "24h", "bucket": 86}, "bucket"),  # 1,001 buckets at most
        ({"window": "7d", "bucket": 605}, "bucket"),
        ({"window": "1h", "bucket": 3601}, "bucket"),  # longer than the window
    ],
)
async def test_a_bad_window_or_bucket_is_422_naming_it(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    user = await make_user(client)
    response = await client.get("/api/stats", params=params, headers=user.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert (problem["code"], problem["field"]) == ("validation_error", field)


async def test_the_largest_bucket_counts_are_allowed(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    for window, bucket in (("24h", 87), ("7d", 606), ("1h", 3600)):
        body = await stats_of(client, user, window=window, bucket=bucket)
        assert len(body["external"]["series"]) <= 1000
        assert body["bucket_seconds"] == bucket


async def test_a_token_is_required(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/stats")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
