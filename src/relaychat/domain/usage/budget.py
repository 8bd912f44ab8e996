"""Per-key daily token budgets (`max_tokens_per_day` in a key's permissions).

The check is one aggregate over the key's usage rows since the start of the UTC day,
read from the `ix_reply_usage_key_time` index alone (key, time, tokens): no table row
is touched, and the range holds only that key's replies of the day. It runs only for a
key that has a budget, and only when a reply is asked for. The budget is soft: replies
count when they end, so requests that pass while earlier replies are still streaming
may together go over it by what those replies cost; the next request is refused.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.access.keys import KeyPermissions
from relaychat.errors import ErrorCode, RateLimited
from relaychat.storage.tables import REPLY_USAGE
from relaychat.storage.types import utcnow


class BudgetExceeded(RateLimited):
    code = ErrorCode.BUDGET_EXCEEDED
    title = "The API key's daily token budget is spent"


_SPENT = select(func.coalesce(func.sum(REPLY_USAGE.c.total_tokens), 0)).where(
    REPLY_USAGE.c.api_key_id == bindparam("key"),
    REPLY_USAGE.c.created_at >= bindparam("since"),
)


def day_start(now: datetime) -> datetime:
    """Midnight (UTC) of `now`'s day."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


async def spent_today(session: AsyncSession, key_ref: str, now: datetime | None = None) -> int:
    """Tokens the key's replies have cost since midnight UTC."""
    since = day_start(now or utcnow())
    spent = await session.scalar(_SPENT, {"key": key_ref, "since": since})
    return int(spent or 0)


async def check_budget(
    session: AsyncSession, key_ref: str, permissions: KeyPermissions, now: datetime | None = None
) -> None:
    """Refuse a reply for a key whose usage today is at or over its `max_tokens_per_day`."""
    budget = permissions.max_tokens_per_day
    if budget is None:
        return
    now = now or utcnow()
    spent = await spent_today(session, key_ref, now)
    if spent < budget:
        return
    resets_at = day_start(now) + timedelta(days=1)
    retry_after = max(1, math.ceil((resets_at - now).total_seconds()))
    raise BudgetExceeded(
        f"this key's replies used {spent} tokens today (UTC), its budget is {budget}; "
        "nothing was stored",
        headers={"Retry-After": str(retry_after)},
        max_tokens_per_day=budget,
        used_today=spent,
        resets_at=resets_at.isoformat().replace("+00:00", "Z"),
    )
