"""The tokens replies cost over the dashboard's grid: in and out per bucket, and the models,
agents and keys that spent the most (from `reply_usage`, the table `GET /api/usage` reads).

Both come from one count per bucket of the rows grouped by model, agent and key together
(a few groups a bucket): the series sums each bucket's groups, and the top lists are the
sums `GET /api/usage` gives over the grid's range, in its order (most tokens first), the
groups summed over every bucket and then per list here. A dashboard polls every 10 s;
finished buckets are kept by the worker (`settled.py`), so a poll reads only the rows of
the last one or two buckets. The dashboard adds the names a viewer may see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Integer, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.stats.grid import Grid, bucket_table
from relaychat.domain.stats.settled import (
    Kept,
    SettledBuckets,
    UsageBucket,
    UsageKey,
    kept_or_counted,
)
from relaychat.domain.usage.report import UsageGroup, UsageTotals
from relaychat.statuses import AgentVisibility
from relaychat.storage.models import Agent, ApiKey, User
from relaychat.storage.tables import REPLY_USAGE

# How many models, agents and keys each list names: the dashboard shows the biggest
# spenders; the whole breakdown is `GET /api/usage`'s.
TOP = 5
_U = REPLY_USAGE.c


@dataclass(frozen=True, slots=True)
class TokensPoint:
    t: datetime
    prompt_tokens: int
    completion_tokens: int
    # Replies of the bucket whose counts are relaychat's estimate (the provider sent none).
    estimated_replies: int


@dataclass(frozen=True, slots=True)
class TopSpender(UsageGroup):
    # The agent's or key's name when the viewer may see it; None for models and otherwise.
    name: str | None


@dataclass(frozen=True, slots=True)
class TokenStats:
    totals: UsageTotals
    series: list[TokensPoint]
    models: list[TopSpender]
    agents: list[TopSpender]
    keys: list[TopSpender]


async def token_stats(
    session: AsyncSession,
    grid: Grid,
    viewer: User,
    owner_id: str | None,
    now: datetime,
    settled: SettledBuckets | None = None,
) -> TokenStats:
    """The tokens of replies in everyone's conversations (`owner_id` None, for an admin) or
    in one owner's, over `grid`; `settled` keeps what is over between answers."""
    kept = settled.usage if settled is not None else Kept[UsageBucket](1)
    done = settled.settled(grid, now, swept=False) if settled is not None else range(0)
    every = await kept_or_counted(
        grid, kept, owner_id, done, lambda part: _count(session, part, owner_id)
    )
    series = []
    summed: dict[UsageKey, list[int]] = {}
    for index, bucket in enumerate(every):
        in_bucket = [0] * 5
        for group, counts in bucket.groups.items():
            into = summed.setdefault(group, [0] * 5)
            for i, value in enumerate(counts):
                into[i] += value
                in_bucket[i] += value
        series.append(TokensPoint(grid.start(index), in_bucket[2], in_bucket[3], in_bucket[1]))
    everyone = owner_id is None
    models = _top((model, n) for (model, _, _), n in summed.items())
    agents = _top((agent_id, n) for (_, agent_id, _), n in summed.items())
    keys = _top((key_id, n) for (_, _, key_id), n in summed.items())
    agent_names = await _agent_names(session, viewer, everyone, agents)
    key_names = await _key_names(session, viewer, everyone, keys)
    return TokenStats(
        totals=UsageTotals(*(sum(n[i] for n in summed.values()) for i in range(5))),
        series=series,
        models=[_named(g, None) for g in models],
        agents=[_named(g, agent_names.get(g.key or "")) for g in agents],
        keys=[_named(g, key_names.get(g.key or "")) for g in keys],
    )


def _top(counts: Iterable[tuple[str | None, list[int]]]) -> list[UsageGroup]:
    """The TOP groups by total tokens, ordered as `GET /api/usage` orders them; each count
    list is replies, estimated replies, prompt, completion and total tokens."""
    summed: dict[str | None, list[int]] = {}
    for key, n in counts:
        into = summed.setdefault(key, [0] * 5)
        for i, value in enumerate(n):
            into[i] += value
    groups = [
        UsageGroup(
            key=key,
            replies=n[0],
            estimated_replies=n[1],
            prompt_tokens=n[2],
            completion_tokens=n[3],
            total_tokens=n[4],
        )
        for key, n in summed.items()
    ]
    groups.sort(key=lambda g: (-g.total_tokens, g.key is None, g.key or ""))
    return groups[:TOP]


def _named(group: UsageGroup, name: str | None) -> TopSpender:
    return TopSpender(
        key=group.key,
        replies=group.replies,
        estimated_replies=group.estimated_replies,
        prompt_tokens=group.prompt_tokens,
        completion_tokens=group.completion_tokens,
        total_tokens=group.total_tokens,
        name=name,
    )


async def _agent_names(
    session: AsyncSession, viewer: User, everyone: bool, groups: list[UsageGroup]
) -> dict[str, str]:
    """Names of the agents listed that the viewer may see (an admin: all of them)."""
    ids = [g.key for g in groups if g.key]
    if not ids:
        return {}
    query = select(Agent.id, Agent.name).where(Agent.id.in_(ids))
    if not everyone:
        query = query.where(
            (Agent.user_id == viewer.id) | (Agent.visibility == AgentVisibility.PUBLIC)
        )
    return {row.id: row.name for row in await session.execute(query)}


async def _key_names(
    session: AsyncSession, viewer: User, everyone: bool, groups: list[UsageGroup]
) -> dict[str, str]:
    """Names of the keys listed that the viewer owns (an admin: all of them): another
    person's key that asked for a reply in your conversation stays an id to you."""
    ids = [g.key for g in groups if g.key and not g.key.startswith("env:")]
    if not ids:
        return {}
    query = select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(ids))
    if not everyone:
        query = query.where(ApiKey.user_id == viewer.id)
    return {row.id: row.name for row in await session.execute(query)}


async def _count(session: AsyncSession, grid: Grid, owner_id: str | None) -> list[UsageBucket]:
    """Every bucket of `grid` with its usage per group (empty buckets empty).

    One statement: the buckets joined to the usage rows of their range, each bucket one
    walk of `ix_reply_usage_time` (or the owner's `ix_reply_usage_user_time`), grouped by
    bucket and group (a few groups a bucket)."""
    buckets = bucket_table(grid, session.get_bind().dialect.name)
    joined: list[ColumnElement[bool]] = [
        _U.created_at >= buckets.c.lo,
        _U.created_at < buckets.c.hi,
    ]
    if owner_id is not None:
        joined.append(_U.user_id == owner_id)
    estimated = func.sum(case((_U.estimated, 1), else_=0), type_=Integer)
    rows = await session.execute(
        select(
            buckets.c.i,
            _U.endpoint,
            _U.model,
            _U.agent_id,
            _U.api_key_id,
            func.count(_U.message_id),
            estimated,
            func.sum(_U.prompt_tokens),
            func.sum(_U.completion_tokens),
            func.sum(_U.total_tokens),
        )
        # From the buckets (an outer join, as an empty bucket gives one row of nulls), so
        # the planner walks the index once per bucket rather than the buckets per row.
        .select_from(buckets.outerjoin(REPLY_USAGE, and_(*joined)))
        .group_by(buckets.c.i, _U.endpoint, _U.model, _U.agent_id, _U.api_key_id)
    )
    found = [UsageBucket() for _ in range(grid.count)]
    for index, endpoint, model, agent_id, key_id, *counts in rows:
        if endpoint is None:
            continue  # an empty bucket
        replies, estimated_replies, prompt, completion, total = (int(n or 0) for n in counts)
        found[index].groups[(f"{endpoint}/{model}", agent_id, key_id)] = (
            replies,
            estimated_replies,
            prompt,
            completion,
            total,
        )
    return found
