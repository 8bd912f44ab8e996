"""A session on the backend under test, and audit rows stored through the domain's own
constructor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.access.audit import new_audit_event
from relaychat.statuses import AuditOutcome
from relaychat.storage.db import create_sessionmaker
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
    """Audit rows at these times with these latencies."""
    session.add_all(
        new_audit_event(
            method="POST",
            path="/api/messages/c",
            outcome=outcome,
            reason=reason,
            status=201 if reason is None else 403,
            latency_ms=latency,
            created_at=at,
        )
        for at, latency in rows
    )
    await session.commit()
