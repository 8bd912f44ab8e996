"""API keys' `last_used_at`, written in background tasks so that authenticating a key never
waits for a write, and at most once a minute per key so that a busy key costs no write
per request."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.storage.models import ApiKey

logger = logging.getLogger(__name__)

LAST_USED_INTERVAL_SECONDS = 60.0


class KeyLastUsedWriter:
    """Takes the uses of keys (`touch`, the key cache's `on_use`) and writes the throttled ones.

    The throttle is per process: each worker writes a key at most once per `interval`.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        interval: float = LAST_USED_INTERVAL_SECONDS,
        max_entries: int = 10_000,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.interval = interval
        self.max_entries = max_entries
        self._last_touch: dict[str, float] = {}
        self._writes: set[asyncio.Task[None]] = set()

    def touch(self, key_id: str, moment: datetime) -> None:
        """Note a use of the key; written in the background at most once per interval per key."""
        now = time.monotonic()
        last = self._last_touch.get(key_id)
        if last is not None and now - last < self.interval:
            return
        if len(self._last_touch) >= self.max_entries:
            self._last_touch.clear()
        self._last_touch[key_id] = now
        task = asyncio.get_running_loop().create_task(self._write_last_used(key_id, moment))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Wait for pending `last_used_at` writes."""
        if self._writes:
            await asyncio.gather(*tuple(self._writes), return_exceptions=True)

    async def close(self) -> None:
        """Finish pending writes."""
        await self.flush()

    async def _write_last_used(self, key_id: str, moment: datetime) -> None:
        try:
            async with self.sessionmaker() as session:
                # Never moves backwards when another worker wrote a later use first.
                await session.execute(
                    update(ApiKey)
                    .where(
                        ApiKey.id == key_id,
                        or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < moment),
                    )
                    .values(last_used_at=moment)
                )
                await session.commit()
        except Exception:
            logger.exception("could not record the last use of API key %s", key_id)
