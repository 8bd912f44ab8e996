"""A session on the backend under test, and audit rows stored through the domain's own
constructor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.access.audit import audit_values
from relaychat.statuses import AuditOutcome
from relaychat.storage.audit_hours import add_audit_hours
from relaychat.storage.db import create_sessionmaker
from relaychat.storage.models import AuditEvent
from tests.support.backends import Backend


@pytest.fixture
async def session(clean_backend: Backend) -> AsyncIterator[AsyncSession]:
    async with create_sessionmaker(clean_backend.engine)() as opened:
        yield opened


async def store_audit(
    session: AsyncSession,
    rows: list[tuple[datetime, float]],
    *,
    outcome: str = AuditOutcome.ACCEPTED,
    reason: str | None = None,
) -> None:
    """Audit rows at these times with these latencies, counted into their hours as the
    writers do."""
    values = [
        audit_values(
            method="POST",
            path="/api/messages/c",
            outcome=outcome,
            reason=reason,
            status=201 if reason is None else 403,
            latency_ms=latency,
            created_at=at,
        )
        for at, latency in rows
    ]
    session.add_all(AuditEvent(**row) for row in values)
    await add_audit_hours(session, values)
    await session.commit()
