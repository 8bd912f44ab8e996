"""The retention sweeper deletes settled callbacks, expired idempotency records and old
audit rows, batch by batch, and nothing that is still needed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from relaychat.domain.ids import new_id
from relaychat.services import Services
from relaychat.storage.models import AuditEvent, IdempotencyRecord, OutboxAttempt, OutboxItem
from relaychat.storage.types import utcnow
from relaychat.workers.retention import Purged, RetentionPolicy, RetentionSweeper
from tests.support.factories import make_user

NOW = utcnow()
DAY = timedelta(days=1)


def outbox_row(user_id: str, name: str, status: str, **times: datetime) -> OutboxItem:
    created = times.pop("created_at", NOW - 30 * DAY)
    return OutboxItem(
        id=name,
        kind="webhook",
        target_id=new_id(),
        user_id=user_id,
        event_type="message.created",
        payload="{}",
        status=status,
        created_at=created,
        next_attempt_at=created,
        **times,
    )


def attempt_of(item_id: str) -> OutboxAttempt:
    return OutboxAttempt(id=new_id(), item_id=item_id, attempted_at=NOW - 20 * DAY)


def idempotency_row(name: str, expires_at: datetime) -> IdempotencyRecord:
    return IdempotencyRecord(
        id=new_id(),
        key_ref="env:test",
        idempotency_key=name,
        request_hash="0" * 64,
        state="done",
        expires_at=expires_at,
    )


def audit_row(name: str, created_at: datetime) -> AuditEvent:
    return AuditEvent(
        id=new_id(),
        created_at=created_at,
        method="POST",
        path=f"/api/messages/{name}",
        conversation_id=name,
        outcome="accepted",
        status=201,
        latency_ms=1.0,
    )


async def remaining(services: Services, column: Any) -> set[str]:
    async with services.sessionmaker() as session:
        return set((await session.scalars(select(column))).all())


async def test_old_rows_go_and_live_ones_stay(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    old, recent = NOW - 8 * DAY, NOW - 6 * DAY
    outbox = [
        outbox_row(user.id, "delivered-old", "delivered", delivered_at=old),
        outbox_row(user.id, "delivered-recent", "delivered", delivered_at=recent),
        # Created long ago, but settled only lately: kept for its full period.
        outbox_row(user.id, "failed-lately", "failed", last_attempt_at=recent),
        outbox_row(user.id, "failed-old", "failed", last_attempt_at=old),
        outbox_row(user.id, "cancelled-old", "cancelled"),
        # Still to be sent, however old: never deleted.
        outbox_row(user.id, "pending-old", "pending", last_attempt_at=old),
    ]
    async with services.sessionmaker() as session:
        session.add_all(outbox)
        await session.flush()
        session.add_all(attempt_of(item.id) for item in outbox for _ in range(3))
        session.add_all(idempotency_row(f"expired-{n}", NOW - timedelta(minutes=n)) for n in (1, 9))
        session.add(idempotency_row("live", NOW + timedelta(hours=1)))
        session.add_all(audit_row(f"old-{n}", NOW - (91 + n) * DAY) for n in range(5))
        session.add(audit_row("recent", NOW - 89 * DAY))
        await session.commit()

    # A batch smaller than what is due: the sweep goes on until nothing due is left.
    sweeper = RetentionSweeper(
        services.sessionmaker,
        RetentionPolicy(outbox_days=7, audit_days=90, batch_size=2),
        clock=lambda: NOW,
    )
    purged = await sweeper.run_once()

    assert purged == Purged(outbox=3, outbox_attempts=9, idempotency=2, audit=5)
    assert await remaining(services, OutboxItem.id) == {
        "delivered-recent",
        "failed-lately",
        "pending-old",
    }
    kept_attempts = await remaining(services, OutboxAttempt.item_id)
    assert kept_attempts == {"delivered-recent", "failed-lately", "pending-old"}
    assert await remaining(services, IdempotencyRecord.idempotency_key) == {"live"}
    assert await remaining(services, AuditEvent.conversation_id) == {"recent"}
    # Nothing is due any more.
    assert await sweeper.run_once() == Purged()


async def test_zero_days_keeps_rows_forever(client: httpx.AsyncClient, services: Services) -> None:
    user = await make_user(client)
    async with services.sessionmaker() as session:
        session.add(outbox_row(user.id, "ancient", "delivered", delivered_at=NOW - 900 * DAY))
        session.add(audit_row("ancient", NOW - 900 * DAY))
        await session.commit()
    sweeper = RetentionSweeper(
        services.sessionmaker, RetentionPolicy(outbox_days=0, audit_days=0), clock=lambda: NOW
    )
    assert await sweeper.run_once() == Purged()
    assert await remaining(services, OutboxItem.id) == {"ancient"}


async def test_services_run_a_sweeper_with_the_configured_policy(services: Services) -> None:
    settings = services.settings
    assert services.retention.policy == RetentionPolicy(
        outbox_days=settings.outbox_retention_days,
        audit_days=settings.audit_retention_days,
        batch_size=settings.retention_batch_size,
    )
    assert services.retention.interval_seconds == settings.retention_sweep_seconds
