"""Rate limits through the `limits` library: in memory on one worker, in Redis when shared."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis


@dataclass(frozen=True)
class RateLimitResult:
    """The outcome of one hit, with what the rate-limit headers need."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float
    window_seconds: int

    @property
    def retry_after(self) -> int:
        """Whole seconds until a slot frees up (at least one)."""
        return max(1, math.ceil(self.reset_at - time.time()))


class RateLimiter:
    """Moving-window limits keyed by any strings; atomic in Redis, so workers share counts."""

    def __init__(self, redis: Redis | None = None, key_prefix: str = "relaychat:") -> None:
        self.storage: Storage
        if redis is not None:
            # Borrow the app's connection pool: one pool to size and to close on shutdown.
            self.storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=f"{key_prefix}limits",
                connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # typed as str by limits
            )
        else:
            self.storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self.storage)

    @property
    def shared(self) -> bool:
        """Whether counts are shared across processes."""
        return not isinstance(self.storage, MemoryStorage)

    async def hit(self, limit: str | RateLimitItem, *keys: str) -> RateLimitResult:
        """Count one request against `limit` for `keys`; report whether it is allowed."""
        item = parse(limit) if isinstance(limit, str) else limit
        allowed = await self._limiter.hit(item, *keys)
        stats = await self._limiter.get_window_stats(item, *keys)
        return RateLimitResult(
            allowed=allowed,
            limit=item.amount,
            remaining=max(0, stats.remaining),
            reset_at=stats.reset_time,
            window_seconds=item.get_expiry(),
        )

    async def reset(self) -> None:
        """Forget every count (tests and admin tooling)."""
        await self.storage.reset()
