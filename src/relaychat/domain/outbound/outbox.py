"""The transactional outbox: callbacks written in the same transaction as their cause.

`enqueue` only adds a row to the caller's session; the caller's commit makes the row and
its cause durable together, so a committed message always gets its callbacks and a rolled
back one never does. After that commit the local delivery worker is woken at once (other
workers find the row on their next poll).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from relaychat import logs
from relaychat.statuses import OutboxStatus
from relaychat.storage.models import OutboxItem
from relaychat.storage.types import utcnow

# session.info keys: the doorbell a sessionmaker was built with, and "this commit enqueued".
DOORBELL = "outbox_doorbell"
_PENDING = "outbox_pending"


def new_delivery_id() -> str:
    """A `msg_…` id: the `webhook-id` a receiver deduplicates on."""
    return f"msg_{uuid.uuid4().hex}"


def pending_row(
    *,
    kind: str,
    target_id: str,
    user_id: str,
    event_type: str,
    payload: str,
    request_id: str | None,
    item_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The column values of a new callback, due at once (for writers that insert rows
    themselves, such as the group-commit writer, and for `enqueue`); `request_id` is the
    request that caused it, named by the caller (a batch writer serves many)."""
    moment = now or utcnow()
    return {
        "id": item_id or new_delivery_id(),
        "kind": kind,
        "target_id": target_id,
        "user_id": user_id,
        "event_type": event_type,
        "payload": payload,
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": moment,
        "created_at": moment,
        "request_id": request_id,
    }


def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    target_id: str,
    user_id: str,
    event_type: str,
    payload: str,
    item_id: str | None = None,
    now: datetime | None = None,
) -> OutboxItem:
    """Add a callback to the session's transaction; due at once. It is the work of the
    request (or the generation) being served here: its delivery is logged under that id."""
    item = OutboxItem(
        **pending_row(
            kind=kind,
            target_id=target_id,
            user_id=user_id,
            event_type=event_type,
            payload=payload,
            request_id=logs.current_request_id(),
            item_id=item_id,
            now=now,
        )
    )
    session.add(item)
    wake_after_commit(session)
    return item


def wake_after_commit(session: AsyncSession) -> None:
    """Ring the delivery worker once this session's transaction commits."""
    session.info[_PENDING] = True


@event.listens_for(Session, "after_commit")
def _ring_after_commit(session: Session) -> None:
    if session.info.pop(_PENDING, False):
        ring: Callable[[], None] | None = session.info.get(DOORBELL)
        if ring is not None:
            ring()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
