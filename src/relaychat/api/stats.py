"""The live dashboard's numbers: external requests, replies, the tokens they cost, webhook
deliveries and open event streams over a recent window (everything for admins, your own for
others)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.stats.dashboard import dashboard_stats
from relaychat.domain.stats.grid import MAX_BUCKETS, MIN_BUCKET_SECONDS, StatsWindow
from relaychat.domain.stats.tokens import TOP
from relaychat.http.deps import CurrentUser, ServicesDep, SessionDep
from relaychat.resources import Timestamp

router = APIRouter(tags=["stats"])


class _FromDomain(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Percentiles(_FromDomain):
    p50: float
    p95: float
    p99: float
    exact: bool = Field(
        description="False when estimated from an evenly spread sample (over 2,000 values)."
    )


class ExternalTotals(_FromDomain):
    total: int
    accepted: int
    replayed: int = Field(description="Answered again from an earlier `Idempotency-Key`.")
    refused: int = Field(description="Refused for any reason but a rate limit.")
    rate_limited: int


class ExternalPoint(_FromDomain):
    t: Timestamp = Field(description="The bucket's start.")
    accepted: int
    replayed: int
    refused: int
    rate_limited: int


class ErrorCount(_FromDomain):
    code: str
    count: int


class ExternalOut(_FromDomain):
    totals: ExternalTotals
    series: list[ExternalPoint] = Field(description="Every bucket, oldest first.")
    processing_ms: Percentiles | None = Field(
        description="Time to answer the accepted requests; null when there are none."
    )
    errors: list[ErrorCount] = Field(
        description="Refusals (rate-limited ones too) by code, most first."
    )


class RepliesTotals(_FromDomain):
    total: int
    completed: int
    failed: int
    aborted: int
    interrupted: int
    running: int = Field(description="Running now, whenever they started.")


class RepliesPoint(_FromDomain):
    t: Timestamp
    completed: int
    failed: int


class RepliesOut(_FromDomain):
    totals: RepliesTotals
    series: list[RepliesPoint] = Field(description="Replies by the bucket they ended in.")
    ttft_ms: Percentiles | None = Field(
        description="From a completed reply's start to its first token; null when none."
    )


class WebhooksOut(_FromDomain):
    delivered: int
    failed: int
    pending: int


class StreamsOut(_FromDomain):
    open: int = Field(description="Event streams open now on every worker.")


class UsageTotalsOut(_FromDomain):
    replies: int = Field(description="Replies that cost tokens.")
    estimated_replies: int = Field(
        description="Of those, replies whose counts relaychat estimated: the provider "
        "reported none."
    )
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsagePoint(_FromDomain):
    t: Timestamp
    prompt_tokens: int = Field(description="Tokens in (the prompts) of the bucket's replies.")
    completion_tokens: int = Field(description="Tokens out (the answers).")
    estimated_replies: int


class UsageSpender(UsageTotalsOut):
    key: str | None = Field(
        description="`<endpoint>/<model>`, agent id or API key id (`env:…` for a key from "
        "the environment), as `GET /api/usage` groups them; null for replies without an "
        "agent or a key."
    )
    name: str | None = Field(
        description="The agent's or key's name when you may see it (your own key, an agent "
        "you may use; every one for an admin); null otherwise and for models."
    )


class UsageStatsOut(_FromDomain):
    totals: UsageTotalsOut
    series: list[UsagePoint] = Field(description="Tokens by the bucket the reply ended in.")
    models: list[UsageSpender] = Field(description=f"At most {TOP}, most tokens first.")
    agents: list[UsageSpender] = Field(description=f"At most {TOP}, most tokens first.")
    keys: list[UsageSpender] = Field(description=f"At most {TOP}, most tokens first.")


class StatsOut(_FromDomain):
    window: StatsWindow
    bucket_seconds: int
    since: Timestamp = Field(description="The start of the first bucket.")
    until: Timestamp = Field(description="Now.")
    scope: Literal["all", "own"]
    external: ExternalOut
    replies: RepliesOut
    webhooks: WebhooksOut
    streams: StreamsOut
    usage: UsageStatsOut = Field(description="Tokens the replies cost (`GET /api/usage`'s counts).")


@router.get("/api/stats")
async def stats(
    user: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
    window: StatsWindow = StatsWindow.HOUR,
    bucket: Annotated[
        int | None,
        Query(
            description=f"Seconds per bucket (default 60 for 1h, 900 for 24h, 3600 for 7d); "
            f"at least {MIN_BUCKET_SECONDS}, at most the window, and at most "
            f"{MAX_BUCKETS} buckets.",
        ),
    ] = None,
) -> StatsOut:
    """Counts per time bucket and percentiles for the dashboard: of everything for admins
    (`scope: all`), else of what your keys, conversations and endpoints saw (`own`)."""
    found = await dashboard_stats(
        session, user, services.streams, window, bucket, settled=services.settled_stats
    )
    return StatsOut.model_validate(found)
