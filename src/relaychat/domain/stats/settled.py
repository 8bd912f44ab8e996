"""Per-bucket figures that nothing changes any more, kept by each worker between answers.

A dashboard asks again every few seconds for the same window, and a week of a million
audit rows takes a walk of a million index entries to count (hundreds of milliseconds on
a busy PostgreSQL). But a bucket that ended a while ago is done, for three kinds of rows:

- audit rows are written within moments of their request (a batch of the audit writer or
  of the group commit later) and never changed; only the retention sweeper deletes them;
- a reply counted in the bucket it ended in ended `completed` or `failed` for good (an
  interrupted one may still be taken back by its worker, so those, with aborted and
  running ones, are always read afresh); it goes only with its conversation;
- a reply's usage row is written in the transaction that ends the reply, stamped then,
  and never changed; it goes only with its user.

So each worker keeps, per viewer and bucket size, the counts and samples of such buckets,
and reads from the database only the buckets that are not settled: after its first
answer, the last one or two. Settled: ended `SETTLE_SECONDS` ago or more (a row written
later than that into its bucket, or stamped by a host whose clock is that far behind, is
the exception this trades away); for the audit, also starting after the retention horizon
(older rows are being deleted, so those buckets are always read afresh). A deleted
conversation or user empties every worker's kept replies and usage (the ORM notices the
delete; its commit empties this worker's at once and the others' through the bus), so
every worker keeps exactly what a fresh reading would give, and any worker answers alike.

The keeper rides in `session.info` (`SETTLED`), as the webhook routes do, so a session of
a sessionmaker without it (the CLI) changes nothing here.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session

from relaychat.domain.stats.grid import Grid
from relaychat.domain.stats.percentiles import slices_per_bucket
from relaychat.realtime.bus import EventBus
from relaychat.storage.models import Conversation, User

logger = logging.getLogger(__name__)

SETTLE_SECONDS = 120
# Scopes (a viewer, or everything, at one bucket size) kept at most per kind; the least
# recently read goes first. A scope holds at most MAX_BUCKETS buckets of a few dozen values.
MAX_SCOPES = 256

REPLIES_FORGOTTEN_SIGNAL = "stats.replies_forgotten"
# session.info keys: the keeper a sessionmaker was built with, and "this transaction
# deleted replies".
SETTLED = "settled_stats"
_DELETED_REPLIES = "settled_stats_deleted_replies"


class Sampled(Protocol):
    """A bucket's sample of values, and how many slices the bucket was cut into for it."""

    sample: list[float] | None
    slices: int


@dataclass(slots=True)
class AuditBucket:
    """One bucket's external requests; `refused` leaves out the rate-limited ones."""

    accepted: int = 0
    replayed: int = 0
    refused: int = 0
    rate_limited: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    sample: list[float] | None = None
    slices: int = 0


@dataclass(slots=True)
class RepliesBucket:
    """One bucket's replies that ended for good."""

    completed: int = 0
    failed: int = 0
    sample: list[float] | None = None
    slices: int = 0


# A usage group: the reply's `endpoint/model`, agent id and key id.
UsageKey = tuple[str, str | None, str | None]


@dataclass(slots=True)
class UsageBucket:
    """One bucket's reply usage per group: replies, estimated replies, prompt, completion
    and total tokens. Kept per group, not only summed, so the top lists of a window are
    sums of kept buckets (a few groups each) rather than a walk of the window's rows."""

    groups: dict[UsageKey, tuple[int, int, int, int, int]] = field(default_factory=dict)


B = TypeVar("B", AuditBucket, RepliesBucket, UsageBucket)


class Kept(Generic[B]):
    """One kind of bucket, by scope (viewer and bucket size) and start in epoch seconds."""

    def __init__(self, max_scopes: int) -> None:
        self.max_scopes = max_scopes
        # Bumped by `clear`: a reading that began before it must not keep what it read.
        self.epoch = 0
        self._scopes: OrderedDict[tuple[str | None, int], dict[int, B]] = OrderedDict()

    def scope(self, owner_id: str | None, grid: Grid) -> dict[int, B]:
        """The kept buckets of a viewer (None: everything) at the grid's bucket size;
        those before the grid are dropped."""
        key = (owner_id, grid.bucket_seconds)
        kept = self._scopes.get(key)
        if kept is None:
            kept = self._scopes[key] = {}
            while len(self._scopes) > self.max_scopes:
                self._scopes.popitem(last=False)
        else:
            self._scopes.move_to_end(key)
        for start in [s for s in kept if s < grid.first]:
            del kept[start]
        return kept

    def clear(self) -> None:
        self.epoch += 1
        self._scopes.clear()


class SettledBuckets:
    """The settled audit, reply and usage buckets this process has counted."""

    def __init__(
        self,
        bus: EventBus | None = None,
        *,
        retention_days: float = 0.0,
        settle_seconds: float = SETTLE_SECONDS,
        max_scopes: int = MAX_SCOPES,
    ) -> None:
        self.retention_seconds = retention_days * 86400
        self.settle_seconds = settle_seconds
        self.audit: Kept[AuditBucket] = Kept(max_scopes)
        self.replies: Kept[RepliesBucket] = Kept(max_scopes)
        self.usage: Kept[UsageBucket] = Kept(max_scopes)
        self.bus = bus
        self._signals: set[asyncio.Task[None]] = set()
        # Signals name their sender, which forgot at its commit already.
        self._origin = uuid.uuid4().hex
        self._unsubscribe = (
            bus.on_signal(REPLIES_FORGOTTEN_SIGNAL, self._on_signal) if bus is not None else None
        )

    def settled(self, grid: Grid, now: datetime, *, swept: bool) -> range:
        """The grid's buckets that are settled at `now`: a run, as later ones are not yet
        and, for rows the retention sweeper deletes (`swept`), earlier ones may be losing
        rows to it."""
        moment = now.timestamp()
        step = grid.bucket_seconds
        done = int((moment - self.settle_seconds - grid.first) // step)
        start = 0
        if swept and self.retention_seconds:
            horizon = moment - self.retention_seconds
            start = max(0, int(-(-(horizon - grid.first) // step)))
        return range(min(start, grid.count), max(0, min(done, grid.count)))

    def replies_deleted(self) -> None:
        """Replies were deleted (a conversation or a user) and that committed: forget the
        kept replies here at once, and on every other worker through the bus. Usage goes
        too: a conversation's rows stay, but a user's go with them, and a conversation's
        delete is rare enough that telling the two apart is not worth a second signal."""
        self._forget()
        if self.bus is None:
            return
        task = asyncio.get_running_loop().create_task(self._broadcast())
        self._signals.add(task)
        task.add_done_callback(self._signals.discard)

    async def close(self) -> None:
        """Stop listening, after the signals still on their way have gone out."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._signals:
            await asyncio.gather(*self._signals, return_exceptions=True)

    async def _broadcast(self) -> None:
        assert self.bus is not None
        try:
            await self.bus.signal(REPLIES_FORGOTTEN_SIGNAL, {"origin": self._origin})
        except Exception:
            # The others keep counting the deleted replies until those leave the window.
            logger.exception("could not tell the other workers that replies were deleted")

    def _on_signal(self, payload: dict[str, Any]) -> None:
        if payload.get("origin") != self._origin:
            self._forget()

    def _forget(self) -> None:
        self.replies.clear()
        self.usage.clear()


async def kept_or_counted(
    grid: Grid,
    kept: Kept[B],
    owner_id: str | None,
    settled: range,
    count: Callable[[Grid], Awaitable[list[B]]],
) -> list[B]:
    """Every bucket of `grid`: kept ones as kept, the others counted by `count` (over
    runs of consecutive buckets), and those of `settled` kept from then on."""
    scope = kept.scope(owner_id, grid)
    epoch = kept.epoch

    def start(index: int) -> int:
        return grid.first + index * grid.bucket_seconds

    found: list[B | None] = [
        scope.get(start(i)) if i in settled else None for i in range(grid.count)
    ]
    for first, stop in runs([bucket is None for bucket in found]):
        counted = await count(grid.part(first, stop))
        for offset, bucket in enumerate(counted):
            found[first + offset] = bucket
            if first + offset in settled and kept.epoch == epoch:
                scope[start(first + offset)] = bucket
    return [bucket for bucket in found if bucket is not None]


async def samples_of(
    grid: Grid,
    buckets: Sequence[Sampled],
    counts: Sequence[int],
    draw: Callable[[Grid, int], Awaitable[dict[int, list[float]]]],
) -> dict[int, list[float]]:
    """Each bucket's sample (by index), drawn by `draw` (a grid and slices per bucket) for
    the buckets with rows that hold none drawn at the grid's slices yet; the drawn ones
    are set on the buckets, so kept buckets keep them."""
    slices = slices_per_bucket(grid)
    lacking = [
        count > 0 and (bucket.sample is None or bucket.slices != slices)
        for bucket, count in zip(buckets, counts, strict=True)
    ]
    for first, stop in runs(lacking):
        drawn = await draw(grid.part(first, stop), slices)
        for index in range(first, stop):
            buckets[index].sample = drawn.get(index - first, [])
            buckets[index].slices = slices
    return {i: bucket.sample for i, bucket in enumerate(buckets) if bucket.sample}


def runs(flags: Sequence[bool]) -> Iterator[tuple[int, int]]:
    """(start, stop) of each run of consecutive true flags."""
    start = None
    for index, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            yield start, index
            start = None


@event.listens_for(Session, "before_flush")
def _note_deleted_replies(session: Session, _context: object, _instances: object) -> None:
    if SETTLED not in session.info or session.info.get(_DELETED_REPLIES):
        return
    # Generations go with their conversation (or their user) by cascade in the database.
    if any(isinstance(obj, (Conversation, User)) for obj in session.deleted):
        session.info[_DELETED_REPLIES] = True


@event.listens_for(Session, "after_commit")
def _forget_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: the outer transaction decides
    if session.info.pop(_DELETED_REPLIES, False):
        settled = session.info.get(SETTLED)
        if isinstance(settled, SettledBuckets):
            settled.replies_deleted()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_DELETED_REPLIES, None)
