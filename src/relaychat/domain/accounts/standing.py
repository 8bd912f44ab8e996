"""Whether a user's access tokens still count: each user's standing (disabled or not, and
which sessions were ended), cached per process and forgotten on every worker when it changes.

A signature and an expiry alone would let an access token outlive a sign-out everywhere, a
password change or a disabled account by up to its lifetime. So every user has a session
epoch, and every token and refresh link carries the epoch it was issued under: ending
sessions moves the user's epoch on, after which what was issued before no longer counts,
except what belongs to the one session the change spared (`kept_session_id`: whoever
changed the password keeps their session). Epochs, not times, so clocks that differ
between hosts, or a refresh racing the change, cannot let an old session through.

Every request asks, so the answer comes from this cache: a dict lookup, and one indexed
read per user per worker when it is missing or older than the TTL. A change empties the
entry on this worker at once and on the others through the bus (`standing_changed`),
which also ends the user's open event streams there: they were opened with tokens that
may no longer count, and the tabs whose tokens still do reconnect at once and replay what
they missed. The TTL only bounds staleness if a signal is lost.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.accounts.tokens import AccessClaims
from relaychat.errors import SessionEnded, UserDisabled, UserGone
from relaychat.realtime.bus import EventBus
from relaychat.storage.models import User

STANDING_CHANGED_SIGNAL = "user.standing_changed"

# Every live cache of this process, so a change is seen here before the signal's round
# trip through Redis comes back: an ended session must not work for one more request here.
_live_caches: weakref.WeakSet[StandingCache] = weakref.WeakSet()

_STANDING_OF = select(User.session_epoch, User.kept_session_id, User.disabled_at)


@dataclass(frozen=True, slots=True)
class Standing:
    """What deciding whether a user's token still counts needs of the user's row."""

    epoch: int
    kept_session_id: str | None
    disabled: bool

    @classmethod
    def of(cls, user: User) -> Standing:
        return cls(user.session_epoch, user.kept_session_id, user.disabled_at is not None)

    def admits(self, epoch: int, session_id: str | None) -> bool:
        """Whether a token or refresh link issued under `epoch` to session `session_id`
        still counts (being disabled aside)."""
        return epoch >= self.epoch or (
            session_id is not None and session_id == self.kept_session_id
        )


async def standing_changed(bus: EventBus, user_id: str, *, end_streams: bool) -> None:
    """Make every worker (this one at once) read the user's standing again, and with
    `end_streams` end the user's open event streams. Call after the change committed."""
    for cache in tuple(_live_caches):
        if cache.bus is bus:
            cache.forget(user_id)
    if end_streams:
        bus.end_user_streams(user_id)
    await bus.signal_committed(
        STANDING_CHANGED_SIGNAL, {"user_id": user_id, "end_streams": end_streams}
    )


class StandingCache:
    """Standings by user id; a change anywhere evicts the entry everywhere.

    Users that do not exist are not cached: their tokens are refused on each read (only
    the server can sign one, so this costs nothing an attacker can choose).
    """

    def __init__(
        self,
        bus: EventBus,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        ttl_seconds: float = 30.0,
        max_entries: int = 100_000,
    ) -> None:
        self.bus = bus
        self.sessionmaker = sessionmaker
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Standing]] = OrderedDict()
        # Bumped by every eviction: a read that began before one must not store its result.
        self._epoch = 0
        self._unsubscribe = bus.on_signal(STANDING_CHANGED_SIGNAL, self._on_changed)
        _live_caches.add(self)

    async def admit(self, claims: AccessClaims) -> None:
        """Refuse the token of these claims if its user is gone (`UserGone`) or disabled
        (`UserDisabled`), or its session was ended (`SessionEnded`)."""
        standing = await self.get(claims.user_id)
        if standing is None:
            raise UserGone()
        if standing.disabled:
            raise UserDisabled("this account is disabled")
        if not standing.admits(claims.epoch, claims.session_id):
            raise SessionEnded()

    async def get(self, user_id: str) -> Standing | None:
        """The user's standing, from cache or database; None if there is no such user."""
        now = time.monotonic()
        hit = self._entries.get(user_id)
        if hit is not None and hit[0] > now:
            self._entries.move_to_end(user_id)
            return hit[1]
        epoch = self._epoch
        async with self.sessionmaker() as session:
            row = (await session.execute(_STANDING_OF.where(User.id == user_id))).first()
        if row is None:
            self._entries.pop(user_id, None)
            return None
        standing = Standing(row.session_epoch, row.kept_session_id, row.disabled_at is not None)
        if epoch == self._epoch:
            self._entries[user_id] = (now + self.ttl, standing)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return standing

    def forget(self, user_id: str) -> None:
        """Drop one user's standing from this process's cache."""
        self._epoch += 1
        self._entries.pop(user_id, None)

    async def close(self) -> None:
        """Stop listening for changes."""
        self._unsubscribe()
        _live_caches.discard(self)

    def _on_changed(self, payload: dict[str, Any]) -> None:
        user_id = payload.get("user_id")
        if not isinstance(user_id, str):
            return
        self.forget(user_id)
        if payload.get("end_streams"):
            self.bus.end_user_streams(user_id)
