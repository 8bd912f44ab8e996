"""The live dashboard's numbers: external requests, replies, webhook deliveries and open
event streams over a recent window (everything for admins, your own for others)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.stats.dashboard import dashboard_stats
from relaychat.domain.stats.grid import MAX_BUCKETS, MIN_BUCKET_SECONDS, StatsWindow
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
    found = await dashboard_stats(session, user, services.streams, window, bucket)
    return StatsOut.model_validate(found)
