"""The audit trail of external requests: recording a row and listing them, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat import logs
from relaychat.domain.cursors import decode_cursor, encode_cursor
from relaychat.domain.ids import new_id
from relaychat.storage.audit_hours import add_audit_hours
from relaychat.storage.models import AuditEvent
from relaychat.storage.types import utcnow

DEFAULT_PAGE = 50
MAX_PAGE = 200


def _clip(value: str | None, length: int) -> str | None:
    # An audit row must never fail to insert because a free-form field ran long.
    return value[:length] if value is not None else None


def audit_values(
    *,
    method: str,
    path: str,
    outcome: str,
    status: int,
    latency_ms: float,
    api_key_id: str | None = None,
    key_owner_id: str | None = None,
    client_address: str | None = None,
    conversation_id: str | None = None,
    user_id: str | None = None,
    strategy: str | None = None,
    reason: str | None = None,
    message_id: str | None = None,
    created_at: datetime | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An audit row's column values, every column named (for `executemany` inserts, whose
    rows must agree, and for `new_audit_event`)."""
    # A query string may carry a credential someone put in a URL; the audit keeps none.
    path = path.split("?", 1)[0]
    return {
        "id": new_id(),
        "created_at": created_at or utcnow(),
        "api_key_id": _clip(api_key_id, 80),
        "key_owner_id": key_owner_id,
        "client_address": _clip(client_address, 64),
        "method": method[:8],
        "path": path[:300],
        "conversation_id": _clip(conversation_id, 128),
        "user_id": user_id,
        "strategy": _clip(strategy, 32),
        "outcome": outcome[:16],
        "reason": _clip(reason, 120),
        "status": status,
        "latency_ms": latency_ms,
        "message_id": message_id,
        # Built while the request is served (the row is written later, in the background).
        "request_id": _clip(request_id or logs.current_request_id(), 128),
    }


def new_audit_event(**fields: Any) -> AuditEvent:
    """An unsaved audit row (see `audit_values` for the fields)."""
    return AuditEvent(**audit_values(**fields))


async def record_audit(session: AsyncSession, **fields: Any) -> AuditEvent:
    """Store one audit row (see `new_audit_event` for the fields), count it into its hour,
    and commit."""
    values = audit_values(**fields)
    event = AuditEvent(**values)
    session.add(event)
    await add_audit_hours(session, [values])
    await session.commit()
    return event


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    next_cursor: str | None


def _utc(moment: datetime | None) -> datetime | None:
    # A time without a zone is read as UTC, the zone every stored time is in.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


async def list_audit(
    session: AsyncSession,
    *,
    key_id: str | None = None,
    owner_id: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
) -> AuditPage:
    """Audit rows newest first, filtered; `since` is inclusive, `until` exclusive."""
    limit = max(1, min(limit, MAX_PAGE))
    since, until = _utc(since), _utc(until)
    query = select(AuditEvent)
    if key_id is not None:
        query = query.where(AuditEvent.api_key_id == key_id)
    if owner_id is not None:
        query = query.where(AuditEvent.key_owner_id == owner_id)
    if outcome is not None:
        query = query.where(AuditEvent.outcome == outcome)
    if since is not None:
        query = query.where(AuditEvent.created_at >= since)
    if until is not None:
        query = query.where(AuditEvent.created_at < until)
    if cursor:
        moment, event_id = decode_cursor(cursor)
        query = query.where(
            or_(
                AuditEvent.created_at < moment,
                and_(AuditEvent.created_at == moment, AuditEvent.id < event_id),
            )
        )
    # One extra row says whether another page exists without a count query.
    query = query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(limit + 1)
    rows = list((await session.scalars(query)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    return AuditPage(rows, encode_cursor(last.created_at, last.id) if last else None)
