"""Real-time events: typed events, a per-user event bus (memory or Redis) with replay, and SSE."""

from __future__ import annotations

from redis.asyncio import Redis

from relaychat.realtime.bus import Envelope, EventBus, SignalHandler, Subscription
from relaychat.realtime.memory import MemoryEventBus
from relaychat.realtime.redis_bus import RedisEventBus
from relaychat.realtime.sse import SSE_HEADERS, SSE_RAW_HEADERS, stream_events

__all__ = [
    "SSE_HEADERS",
    "SSE_RAW_HEADERS",
    "Envelope",
    "EventBus",
    "MemoryEventBus",
    "RedisEventBus",
    "SignalHandler",
    "Subscription",
    "create_event_bus",
    "stream_events",
]


def create_event_bus(
    redis: Redis | None,
    key_prefix: str,
    log_size: int = 1000,
    *,
    queue_size: int = 512,
    log_ttl_seconds: int = 24 * 3600,
) -> EventBus:
    """A Redis bus when given a client (events cross workers), else an in-process one."""
    if redis is None:
        return MemoryEventBus(log_size=log_size, queue_size=queue_size)
    return RedisEventBus(
        redis,
        key_prefix,
        log_size=log_size,
        queue_size=queue_size,
        log_ttl_seconds=log_ttl_seconds,
    )
