"""Token usage summed per day, model, agent or key over a time range (`GET /api/usage`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Integer, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from relaychat.domain.access.keys import AdminRequired
from relaychat.domain.accounts.users import is_admin
from relaychat.errors import ValidationFailed
from relaychat.storage.models import User
from relaychat.storage.tables import REPLY_USAGE
from relaychat.storage.types import utcnow

DEFAULT_RANGE = timedelta(days=30)
_U = REPLY_USAGE.c


class GroupBy(StrEnum):
    DAY = "day"
    MODEL = "model"
    AGENT = "agent"
    KEY = "key"


@dataclass(frozen=True, slots=True)
class UsageTotals:
    replies: int
    estimated_replies: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class UsageGroup(UsageTotals):
    # The day (YYYY-MM-DD, UTC), `endpoint/model`, agent id or key id (`env:…` for a
    # system key); None for replies without an agent or a key.
    key: str | None


@dataclass(frozen=True, slots=True)
class UsageReport:
    group_by: GroupBy
    scope: str  # "own" | "all"
    since: datetime
    until: datetime
    totals: UsageTotals
    groups: list[UsageGroup]


def _day(dialect: str) -> ColumnElement[Any]:
    """The UTC day of a row as `YYYY-MM-DD`."""
    if dialect == "sqlite":  # stored as naive UTC text, `YYYY-MM-DD HH:MM:SS…`
        return func.substr(_U.created_at, 1, 10)
    return func.to_char(func.timezone("UTC", _U.created_at), "YYYY-MM-DD")


def _group_key(group_by: GroupBy, dialect: str) -> ColumnElement[Any]:
    if group_by == GroupBy.DAY:
        return _day(dialect)
    if group_by == GroupBy.MODEL:
        # As the OpenAI-compatible API names endpoint models: `<endpoint>/<model>`.
        return _U.endpoint + "/" + _U.model
    if group_by == GroupBy.AGENT:
        return _U.agent_id
    return _U.api_key_id


def _utc(moment: datetime | None, field: str) -> datetime | None:
    """`moment` in UTC (taken as UTC when it has no zone)."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:  # year 1 at +14:00, say: before any time we store
        raise ValidationFailed(f"`{field}` is out of range", field=field) from None


def check_range(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    """The range asked for, defaulting to the last 30 days; `since` must come first."""
    since, until = _utc(since, "since"), _utc(until, "until")
    until = until or utcnow()
    if since is None:
        try:
            since = until - DEFAULT_RANGE
        except OverflowError:
            since = datetime.min.replace(tzinfo=UTC)
    if since >= until:
        raise ValidationFailed("`since` must be before `until`", field="since")
    return since, until


async def usage_report(
    session: AsyncSession,
    user: User,
    group_by: GroupBy,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    everyone: bool = False,
) -> UsageReport:
    """The user's usage (every user's with `everyone`, admins only) in [since, until)."""
    if everyone and not is_admin(user):
        raise AdminRequired("only an admin may see everyone's usage")
    since, until = check_range(since, until)
    dialect = session.get_bind().dialect.name
    key = _group_key(group_by, dialect).label("key")
    estimated = func.sum(case((_U.estimated, 1), else_=0), type_=Integer)
    query = (
        select(
            key,
            func.count().label("replies"),
            estimated.label("estimated_replies"),
            func.sum(_U.prompt_tokens).label("prompt_tokens"),
            func.sum(_U.completion_tokens).label("completion_tokens"),
            func.sum(_U.total_tokens).label("total_tokens"),
        )
        .where(_U.created_at >= since, _U.created_at < until)
        .group_by(key)
    )
    if not everyone:
        query = query.where(_U.user_id == user.id)
    rows = (await session.execute(query)).all()
    groups = [
        UsageGroup(
            key=row.key,
            replies=row.replies,
            estimated_replies=int(row.estimated_replies or 0),
            prompt_tokens=int(row.prompt_tokens or 0),
            completion_tokens=int(row.completion_tokens or 0),
            total_tokens=int(row.total_tokens or 0),
        )
        for row in rows
    ]
    if group_by == GroupBy.DAY:
        groups.sort(key=lambda g: g.key or "")
    else:  # the biggest spenders first; ties in a stable order
        groups.sort(key=lambda g: (-g.total_tokens, g.key is None, g.key or ""))
    totals = UsageTotals(
        replies=sum(g.replies for g in groups),
        estimated_replies=sum(g.estimated_replies for g in groups),
        prompt_tokens=sum(g.prompt_tokens for g in groups),
        completion_tokens=sum(g.completion_tokens for g in groups),
        total_tokens=sum(g.total_tokens for g in groups),
    )
    return UsageReport(group_by, "all" if everyone else "own", since, until, totals, groups)
