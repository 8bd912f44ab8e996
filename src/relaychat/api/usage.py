"""Token usage of replies, summed per day, model, agent or key (yours; everyone's for admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.usage.report import GroupBy, usage_report
from relaychat.http.deps import CurrentUser, SessionDep
from relaychat.resources import Timestamp

router = APIRouter(tags=["usage"])


class UsageTotalsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    replies: int
    estimated_replies: int = Field(
        description="Replies whose counts relaychat estimated: the provider reported none."
    )
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsageGroupOut(UsageTotalsOut):
    key: str | None = Field(
        description="The UTC day (`YYYY-MM-DD`), `<endpoint>/<model>`, agent id, or API key "
        "id (`env:…` for a key from the environment); null for replies without an agent "
        "or a key."
    )


class UsageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    group_by: GroupBy
    scope: Literal["own", "all"]
    since: Timestamp
    until: Timestamp
    totals: UsageTotalsOut
    groups: list[UsageGroupOut] = Field(
        description="By day: oldest first. Otherwise: most tokens first."
    )


@router.get("/api/usage")
async def usage(
    user: CurrentUser,
    session: SessionDep,
    group_by: GroupBy = GroupBy.DAY,
    since: Annotated[
        datetime | None,
        Query(
            description="Start (inclusive), ISO 8601; UTC when no zone. Default: until - 30 days."
        ),
    ] = None,
    until: Annotated[
        datetime | None, Query(description="End (exclusive), ISO 8601; default: now.")
    ] = None,
    all_users: Annotated[
        bool, Query(alias="all", description="Every user's usage (admins only).")
    ] = False,
) -> UsageOut:
    """Tokens your replies cost, from the providers' counts (or estimates, counted
    apart), grouped by `day`, `model`, `agent` or `key`; with `all=true` everyone's."""
    report = await usage_report(
        session, user, group_by, since=since, until=until, everyone=all_users
    )
    return UsageOut.model_validate(report)
