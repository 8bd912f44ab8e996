"""GET /api/stats `usage`: the tokens replies cost per bucket and by model, agent and key,
the same counts as GET /api/usage, scoped like the rest of the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select

from relaychat.domain.stats.grid import StatsWindow, make_grid
from relaychat.domain.stats.settled import SettledBuckets
from relaychat.domain.stats.tokens import TokenStats, token_stats
from relaychat.domain.usage.counting import TokenCount
from relaychat.domain.usage.records import record_usage
from relaychat.services import Services
from relaychat.storage.models import ReplyUsage, User
from tests.support.chat import agent_conversation, ask, wait_generation
from tests.support.factories import TestUser, make_conversation, make_key, make_sessionless_user


async def get(client: httpx.AsyncClient, user: TestUser, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def spender(entries: list[dict[str, Any]], key: str | None) -> dict[str, Any]:
    [found] = [e for e in entries if e["key"] == key]
    return found


async def test_tokens_per_bucket_and_top_spenders_for_each_viewer(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = await make_sessionless_user(client)
    ann = await make_sessionless_user(client)
    bob = await make_sessionless_user(client)
    assert admin.role == "admin" and ann.role == bob.role == "user"
    cid = (await make_conversation(client, ann, endpoint="fake", title="t"))["conversation_id"]
    await ask(client, ann, cid, "hello")
    await ask(client, ann, cid, '!fake {"usage": false}\nestimate this one')  # estimated
    key = await make_key(client, ann)
    posted = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "from the gateway", "respond": True},
        headers=key.headers,
    )
    assert posted.status_code == 202, posted.text
    await wait_generation(client, ann, posted.json()["generation_id"])
    agent_id, agent_cid = await agent_conversation(client, ann)
    await ask(client, ann, agent_cid, "hi agent")
    bob_cid = (await make_conversation(client, bob, endpoint="fake", title="t"))["conversation_id"]
    await ask(client, bob, bob_cid, "bob's")

    mine = await get(client, ann, "/api/stats")
    assert mine["scope"] == "own"
    tokens = mine["usage"]
    # The same sums as GET /api/usage over the same range: the grid's, to its last
    # bucket's end (`until` is now, to the second).
    end = parse(mine["since"]) + timedelta(seconds=mine["bucket_seconds"] * len(tokens["series"]))
    report = await get(
        client, ann, "/api/usage", group_by="model", since=mine["since"], until=end.isoformat()
    )
    assert tokens["totals"] == report["totals"]
    assert tokens["totals"]["replies"] == 4
    assert tokens["totals"]["estimated_replies"] == 1
    assert tokens["models"] == [{**g, "name": None} for g in report["groups"]]
    for group_by, listed in (("agent", "agents"), ("key", "keys")):
        grouped = await get(
            client, ann, "/api/usage", group_by=group_by, since=mine["since"], until=end.isoformat()
        )
        unnamed = [{k: v for k, v in e.items() if k != "name"} for e in tokens[listed]]
        assert unnamed == grouped["groups"][:5]

    # Each reply's tokens are in the bucket its usage row was written in.
    since = parse(mine["since"])
    series = tokens["series"]
    assert len(series) == len(mine["replies"]["series"])
    assert [p["t"] for p in series] == [p["t"] for p in mine["replies"]["series"]]
    expected = [[0, 0, 0] for _ in series]
    async with services.sessionmaker() as session:
        rows = (await session.scalars(select(ReplyUsage).where(ReplyUsage.user_id == ann.id))).all()
    assert len(rows) == 4
    for row in rows:
        at = (
            row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=since.tzinfo)
        )
        index = int((at - since).total_seconds() // mine["bucket_seconds"])
        expected[index][0] += row.prompt_tokens
        expected[index][1] += row.completion_tokens
        expected[index][2] += int(row.estimated)
    assert [
        [p["prompt_tokens"], p["completion_tokens"], p["estimated_replies"]] for p in series
    ] == (expected)

    # Agents and keys by name (the viewer's own); replies with neither under null.
    agent = spender(tokens["agents"], agent_id)
    assert (agent["name"], agent["replies"]) == ("Helper", 1)
    assert spender(tokens["agents"], None)["replies"] == 3
    by_key = spender(tokens["keys"], key.id)
    assert (by_key["name"], by_key["replies"]) == ("test key", 1)
    assert spender(tokens["keys"], None)["replies"] == 3
    totals = [e["total_tokens"] for e in tokens["keys"]]
    assert totals == sorted(totals, reverse=True)

    theirs = (await get(client, bob, "/api/stats"))["usage"]
    assert theirs["totals"]["replies"] == 1
    assert theirs["keys"] == [spender(theirs["keys"], None)]

    everything = await get(client, admin, "/api/stats", window="7d")
    assert everything["scope"] == "all"
    assert everything["usage"]["totals"]["replies"] == 5
    assert (
        sum(p["prompt_tokens"] for p in everything["usage"]["series"])
        == (everything["usage"]["totals"]["prompt_tokens"])
    )
    # An admin sees every key's name.
    assert spender(everything["usage"]["keys"], key.id)["name"] == "test key"

    nobody = (await get(client, await make_sessionless_user(client), "/api/stats"))["usage"]
    assert nobody["totals"]["total_tokens"] == 0
    assert nobody["models"] == nobody["agents"] == nobody["keys"] == []
    assert {p["prompt_tokens"] for p in nobody["series"]} == {0}


NOW = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
GRID = make_grid(StatsWindow.HOUR, 60, NOW)


async def spend(
    services: Services, user_id: str, message_id: str, model: str, tokens: int, ago: timedelta
) -> None:
    async with services.sessionmaker() as session:
        await record_usage(
            session,
            message_id=message_id,
            generation_id="g",
            user_id=user_id,
            conversation_id="c",
            endpoint="fake",
            model=model,
            agent_id=None,
            api_key_id=f"key-{model}",
            tokens=TokenCount(tokens // 2, tokens - tokens // 2, estimated=model == "b"),
            at=NOW - ago,
        )
        await session.commit()


async def test_a_refresh_reads_the_open_buckets_and_keeps_the_finished_ones(
    client: httpx.AsyncClient, services: Services
) -> None:
    ann = await make_sessionless_user(client)
    await spend(services, ann.id, "m1", "a", 100, timedelta(minutes=50))
    await spend(services, ann.id, "m2", "b", 40, timedelta(minutes=30))
    await spend(services, ann.id, "m3", "a", 10, timedelta(seconds=20))
    kept = SettledBuckets()

    async def stats(keeper: SettledBuckets) -> TokenStats:
        async with services.sessionmaker() as session:
            viewer = await session.get(User, ann.id)
            assert viewer is not None
            return await token_stats(session, GRID, viewer, ann.id, NOW, keeper)

    first = await stats(kept)
    assert first == await stats(SettledBuckets())
    report = await get(
        client,
        ann,
        "/api/usage",
        group_by="model",
        since=GRID.since.isoformat(),
        until=GRID.end.isoformat(),
    )
    assert [(g.key, g.total_tokens) for g in first.models] == [
        (g["key"], g["total_tokens"]) for g in report["groups"]
    ]
    assert [g.key for g in first.models] == ["fake/a", "fake/b"]

    # A new reply in the open bucket, and a row that lands in a finished bucket after it
    # was kept (the trade settled.py makes: this worker does not see it).
    await spend(services, ann.id, "m4", "c", 500, timedelta(seconds=10))
    await spend(services, ann.id, "m5", "b", 1000, timedelta(minutes=50))
    again = await stats(kept)
    last = again.series[-1]
    assert (last.prompt_tokens, last.completion_tokens) == (5 + 250, 5 + 250)
    assert again.series[:-1] == first.series[:-1]
    assert [(g.key, g.total_tokens) for g in again.models] == [
        ("fake/c", 500),
        ("fake/a", 110),
        ("fake/b", 40),
    ]
    assert [(g.key, g.replies) for g in again.keys] == [
        ("key-c", 1),
        ("key-a", 2),
        ("key-b", 1),
    ]
    assert (again.totals.replies, again.totals.estimated_replies) == (4, 1)
    # The answer is a fresh reading of the rows this worker can know of, to the last figure.
    assert again != await stats(SettledBuckets())
    async with services.sessionmaker() as session:
        await session.execute(delete(ReplyUsage).where(ReplyUsage.message_id == "m5"))
        await session.commit()
    assert again == await stats(SettledBuckets())
