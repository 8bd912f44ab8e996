"""How many event streams are open, in all or for one user: on this process, and on every
worker of the deployment.

Without Redis there is one process (`relaychat serve` refuses several workers without
it), so its own counts are the answer. With Redis each worker keeps a snapshot of its
counts (the total under `*`, and one field per user with a stream open) in a hash of its
own that lives as long as its lease, and its lease's end (by Redis's clock, so the hosts'
clocks need not agree) in a sorted set. A snapshot is written whenever a count changes (at
most every `MIN_GAP_SECONDS`, so a reconnect wave is one write) and at least every
`report_seconds`; writing whole snapshots, never increments, means a lost write or a
restarted Redis is mended by the next one. A read sums the field over the workers whose
lease holds: a worker that died without a word drops out once its lease lapses, and its
hash expires with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from redis.asyncio import Redis

from relaychat.metrics import OPEN_STREAMS

logger = logging.getLogger(__name__)

# Coalesces a burst of streams opening or closing into one write.
MIN_GAP_SECONDS = 0.05
ALL = "*"

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS: leases (sorted set), this worker's hash. ARGV: worker, lease ms, then field, count
# pairs. The hash is replaced whole.
_REPORT_LUA = (
    _NOW
    + """
redis.call('DEL', KEYS[2])
-- In slices: unpack has a limit of a few thousand values.
for i = 3, #ARGV, 1000 do
  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)
# KEYS: leases. ARGV: the workers' hash prefix, the field. The sum of the field over the
# workers whose lease holds. The hashes' names are built here, from the same hash tag as
# the leases' key, so all of them sit in its Redis Cluster slot.
_TOTAL_LUA = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local total = 0
for _, worker in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local count = redis.call('HGET', ARGV[1] .. worker, ARGV[2])
  if count then
    total = total + tonumber(count)
  end
end
return total
"""
)


class OpenStreams:
    """Counts the event streams this process serves, per user, and reports them."""

    def __init__(
        self,
        redis: Redis | None,
        key_prefix: str,
        worker_id: str,
        *,
        report_seconds: float = 5.0,
        lease_seconds: float = 15.0,
    ) -> None:
        self.local = 0
        self.by_user: dict[str, int] = {}
        self.worker_id = worker_id
        self.report_seconds = report_seconds
        self.lease_ms = int(lease_seconds * 1000)
        self._redis = redis
        self._leases = f"{key_prefix}{{open-streams}}:leases"
        self._hash_prefix = f"{key_prefix}{{open-streams}}:worker:"
        self._changed = asyncio.Event()
        self._reporter: asyncio.Task[None] | None = None
        if redis is not None:
            self._report_script = redis.register_script(_REPORT_LUA)
            self._total_script = redis.register_script(_TOTAL_LUA)

    @contextlib.contextmanager
    def counted(self, user_id: str) -> Iterator[None]:
        """Count one stream of `user_id` (and the open-streams gauge) while the block runs."""
        self.local += 1
        self.by_user[user_id] = self.by_user.get(user_id, 0) + 1
        OPEN_STREAMS.inc()
        self._changed.set()
        try:
            yield
        finally:
            self.local -= 1
            left = self.by_user[user_id] - 1
            if left:
                self.by_user[user_id] = left
            else:
                del self.by_user[user_id]
            OPEN_STREAMS.dec()
            self._changed.set()

    async def total(self, user_id: str | None = None) -> int:
        """Streams open right now on every worker: all of them, or `user_id`'s."""
        if self._redis is None:
            return self.local if user_id is None else self.by_user.get(user_id, 0)
        field = ALL if user_id is None else user_id
        return int(await self._total_script(keys=[self._leases], args=[self._hash_prefix, field]))

    async def start(self) -> None:
        """Report this worker's counts (Redis only), now and from then on."""
        if self._redis is None or self._reporter is not None:
            return
        await self._report()
        self._reporter = asyncio.create_task(self._run(), name="open-streams-report")

    async def close(self) -> None:
        """Stop reporting and take this worker out of the totals at once."""
        reporter, self._reporter = self._reporter, None
        if reporter is None or self._redis is None:
            return
        reporter.cancel()
        await asyncio.wait([reporter])
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._leases, self.worker_id)
                pipe.delete(self._hash_prefix + self.worker_id)
                await pipe.execute()
        except Exception:  # its lease runs out instead
            logger.warning("could not withdraw this worker's open streams", exc_info=True)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.report_seconds):
                    await self._changed.wait()
            await asyncio.sleep(MIN_GAP_SECONDS)
            try:
                await self._report()
            except Exception:  # Redis away: the next change or heartbeat tries again
                logger.warning("could not report the open streams", exc_info=True)

    async def _report(self) -> None:
        self._changed.clear()
        fields: list[str | int] = [ALL, self.local]
        for user_id, count in self.by_user.items():
            fields += [user_id, count]
        await self._report_script(
            keys=[self._leases, self._hash_prefix + self.worker_id],
            args=[self.worker_id, self.lease_ms, *fields],
        )
