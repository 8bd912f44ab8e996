"""The long-lived objects of one process, built from Settings and closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from relaychat.domain.tokens import AccessTokens
from relaychat.ratelimit import RateLimiter
from relaychat.settings import Settings
from relaychat.storage.db import create_engine, create_sessionmaker


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    tokens: AccessTokens
    limiter: RateLimiter
    redis: Redis | None
    owns_engine: bool = True

    @classmethod
    def build(cls, settings: Settings, engine: AsyncEngine | None = None) -> Services:
        """Create engine (unless lent one), token signer, limiter and Redis client."""
        owns_engine = engine is None
        engine = engine or create_engine(settings.effective_database_url)
        redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            tokens=AccessTokens(settings.resolved_jwt_secret(), settings.access_token_ttl_seconds),
            limiter=RateLimiter(redis, settings.redis_key_prefix),
            redis=redis,
            owns_engine=owns_engine,
        )

    async def close(self) -> None:
        """Release pools and connections."""
        if self.redis is not None:
            await self.redis.aclose()
        if self.owns_engine:
            await self.engine.dispose()
