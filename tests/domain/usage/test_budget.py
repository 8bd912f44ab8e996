"""The budget check itself, at chosen moments: only the current UTC day counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from relaychat.domain.access.keys import KeyPermissions
from relaychat.domain.usage.budget import BudgetExceeded, check_budget, spent_today
from relaychat.domain.usage.counting import TokenCount
from relaychat.domain.usage.records import record_usage
from relaychat.services import Services
from tests.support.factories import make_user

NOW = datetime(2026, 12, 4, 21, 30, 15, tzinfo=UTC)


async def spend(services: Services, user_id: str, key: str, tokens: int, at: datetime) -> None:
    async with services.sessionmaker() as session:
        await record_usage(
            session,
            message_id=f"m-{at.timestamp()}-{tokens}",
            generation_id="g",
            user_id=user_id,
            conversation_id="c",
            endpoint="fake",
            model="fake-model",
            agent_id=None,
            api_key_id=key,
            tokens=TokenCount(tokens // 2, tokens - tokens // 2),
            at=at,
        )
        await session.commit()


async def test_only_todays_usage_of_the_key_counts(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    midnight = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    await spend(services, user.id, "k1", 500, midnight - timedelta(microseconds=1))
    await spend(services, user.id, "k1", 60, midnight)
    await spend(services, user.id, "k1", 40, NOW - timedelta(hours=1))
    await spend(services, user.id, "k2", 900, NOW - timedelta(hours=1))
    budget = KeyPermissions(max_tokens_per_day=101)

    async with services.sessionmaker() as session:
        assert await spent_today(session, "k1", NOW) == 100
        await check_budget(session, "k1", budget, NOW)  # 100 < 101
        await check_budget(session, "k1", KeyPermissions(), NOW)  # no budget, no limit
        with pytest.raises(BudgetExceeded) as refused:
            await check_budget(session, "k1", KeyPermissions(max_tokens_per_day=100), NOW)
    error = refused.value
    assert (error.status, error.code) == (429, "budget_exceeded")
    # 21:30:15 → midnight is 2 h 29 min 45 s away.
    assert error.headers == {"Retry-After": str(2 * 3600 + 29 * 60 + 45)}
    assert error.fields["resets_at"] == "2026-12-05T00:00:00Z"
    assert error.fields["used_today"] == 100
