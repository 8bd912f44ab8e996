"""One answer of `GET /api/stats`: every part of it over one grid, for one viewer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.accounts.users import is_admin
from relaychat.domain.stats.deliveries import DeliveryStats, delivery_stats
from relaychat.domain.stats.external_requests import ExternalStats, external_stats
from relaychat.domain.stats.grid import StatsWindow, make_grid
from relaychat.domain.stats.replies import RepliesStats, replies_stats
from relaychat.domain.stats.settled import SettledBuckets
from relaychat.domain.stats.tokens import TokenStats, token_stats
from relaychat.realtime.open_streams import OpenStreams
from relaychat.storage.models import User
from relaychat.storage.types import utcnow


@dataclass(frozen=True, slots=True)
class StreamStats:
    open: int


@dataclass(frozen=True, slots=True)
class Stats:
    window: StatsWindow
    bucket_seconds: int
    since: datetime
    until: datetime
    scope: Literal["all", "own"]
    external: ExternalStats
    replies: RepliesStats
    webhooks: DeliveryStats
    streams: StreamStats
    usage: TokenStats


async def dashboard_stats(
    session: AsyncSession,
    viewer: User,
    streams: OpenStreams,
    window: StatsWindow,
    bucket_seconds: int | None = None,
    *,
    settled: SettledBuckets | None = None,
    now: datetime | None = None,
) -> Stats:
    """The statistics `viewer` may see: everything for an admin, else what their own keys
    caused and what happened in their own conversations and to their own endpoints.
    `settled` keeps the finished buckets between answers (the process's).

    Open streams: every worker's for an admin, the viewer's own (their tabs) for others.
    Token usage: of replies in every conversation for an admin, in the viewer's own else.
    """
    now = now or utcnow()
    grid = make_grid(window, bucket_seconds, now)
    owner_id = None if is_admin(viewer) else viewer.id
    return Stats(
        window=window,
        bucket_seconds=grid.bucket_seconds,
        since=grid.since,
        until=grid.until,
        scope="all" if owner_id is None else "own",
        external=await external_stats(session, grid, owner_id, now, settled),
        replies=await replies_stats(session, grid, owner_id, now, settled),
        webhooks=await delivery_stats(session, grid, owner_id),
        streams=StreamStats(open=await streams.total(owner_id)),
        usage=await token_stats(session, grid, viewer, owner_id, now, settled),
    )
