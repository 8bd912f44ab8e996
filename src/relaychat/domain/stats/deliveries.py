"""Webhook deliveries of the window by where they stand (from the outbox)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.stats.grid import Grid
from relaychat.statuses import OutboxKind, OutboxStatus
from relaychat.storage.models import OutboxItem


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """Deliveries of the events of the window (a delivery is as old as its event)."""

    delivered: int
    failed: int
    pending: int


async def delivery_stats(session: AsyncSession, grid: Grid, owner_id: str | None) -> DeliveryStats:
    """Deliveries to every endpoint (`owner_id` None) or to one owner's endpoints."""
    scope: list[ColumnElement[bool]] = [] if owner_id is None else [OutboxItem.user_id == owner_id]
    rows = await session.execute(
        select(OutboxItem.status, func.count())
        .where(
            *scope,
            OutboxItem.created_at >= grid.since,
            OutboxItem.created_at < grid.end,
            OutboxItem.kind == OutboxKind.WEBHOOK,
        )
        .group_by(OutboxItem.status)
    )
    counts = {OutboxStatus(status): count for status, count in rows}
    return DeliveryStats(
        delivered=counts.get(OutboxStatus.DELIVERED, 0),
        failed=counts.get(OutboxStatus.FAILED, 0),
        pending=counts.get(OutboxStatus.PENDING, 0),
    )
