"""The audit trail of external requests: per key for its owner, all of it for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.access import audit, keys
from relaychat.domain.accounts import users
from relaychat.http.deps import CurrentUser, SessionDep
from relaychat.resources import Timestamp

router = APIRouter(tags=["audit"])

Limit = Annotated[int, Query(ge=1, le=audit.MAX_PAGE)]
Cursor = Annotated[str | None, Query(max_length=200, description="`next_cursor` of a page.")]
Outcome = Annotated[str | None, Query(max_length=16)]
Since = Annotated[datetime | None, Query(description="From this time on (inclusive).")]
Until = Annotated[datetime | None, Query(description="Before this time (exclusive).")]


class AuditEventOut(BaseModel):
    """An audit row as clients see it (every column, read from the row)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: Timestamp
    api_key_id: str | None
    key_owner_id: str | None
    client_address: str | None
    method: str
    path: str
    conversation_id: str | None
    user_id: str | None
    strategy: str | None
    outcome: str = Field(
        description="What became of the request: `accepted`, `replayed` or `refused`."
    )
    reason: str | None
    status: int
    latency_ms: float
    message_id: str | None
    request_id: str | None = Field(
        description="The request's `X-Request-Id`, also on its log lines and in its "
        "problem+json (`request_id`)."
    )


class AuditPageOut(BaseModel):
    events: list[AuditEventOut]
    next_cursor: str | None


def _page(page: audit.AuditPage) -> AuditPageOut:
    return AuditPageOut(
        events=[AuditEventOut.model_validate(e) for e in page.events], next_cursor=page.next_cursor
    )


@router.get("/api/keys/{key_id}/audit")
async def key_audit(
    key_id: Annotated[str, Path(max_length=64)],
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = audit.DEFAULT_PAGE,
    cursor: Cursor = None,
    outcome: Outcome = None,
    since: Since = None,
    until: Until = None,
) -> AuditPageOut:
    """Requests made with one of your keys (any key, for admins), newest first."""
    key = await keys.get_key(session, user, key_id)
    page = await audit.list_audit(
        session,
        key_id=key.id,
        outcome=outcome,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return _page(page)


@router.get("/api/admin/audit")
async def admin_audit(
    user: CurrentUser,
    session: SessionDep,
    key_id: Annotated[str | None, Query(max_length=80)] = None,
    limit: Limit = audit.DEFAULT_PAGE,
    cursor: Cursor = None,
    outcome: Outcome = None,
    since: Since = None,
    until: Until = None,
) -> AuditPageOut:
    """Every external request, newest first (admins only); `key_id` may be `env:…`."""
    if not users.is_admin(user):
        raise keys.AdminRequired("only an admin may read the whole audit trail")
    page = await audit.list_audit(
        session,
        key_id=key_id,
        outcome=outcome,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return _page(page)
