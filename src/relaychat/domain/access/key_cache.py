"""A per-process cache of API keys by lookup, emptied on every worker when a key changes
(or its owner is disabled or enabled again).

Uses of a key go to the cache's `on_use`: in a server, the background writer of
`last_used_at` (`relaychat.workers.key_last_used`), handed in by Services.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.access.keys import KeyPermissions, KeyPrincipal, SystemKey, stored_permissions
from relaychat.realtime.bus import EventBus
from relaychat.storage.models import ApiKey, User

KEY_CHANGED_SIGNAL = "api_key.changed"

# Every live cache of this process, so a change evicts locally before the signal's round
# trip through Redis comes back: a revoked key must not work for even one more request here.
_live_caches: weakref.WeakSet[KeyCache] = weakref.WeakSet()


@dataclass(frozen=True)
class KeySnapshot:
    """What authentication needs of a key row; immutable, so safe to share."""

    id: str
    lookup: str
    name: str
    owner_id: str
    system: bool
    secret_hash: str
    previous_secret_hash: str | None
    previous_valid_until: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    permissions: KeyPermissions
    # An admin disabled the key's owner: the key is refused while they stay disabled.
    owner_disabled: bool = False

    @classmethod
    def of(cls, key: ApiKey, *, owner_disabled: bool = False) -> KeySnapshot:
        perms = stored_permissions(key)
        if key.system:
            # Naming the user is what a system key is for.
            perms = perms.model_copy(update={"can_name_user": True})
        return cls(
            id=key.id,
            lookup=key.lookup,
            name=key.name,
            owner_id=key.user_id,
            system=key.system,
            secret_hash=key.secret_hash,
            previous_secret_hash=key.previous_secret_hash,
            previous_valid_until=key.previous_valid_until,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            permissions=perms,
            owner_disabled=owner_disabled,
        )

    def principal(self) -> KeyPrincipal:
        return KeyPrincipal(
            key_id=self.id,
            key_ref=self.id,
            name=self.name,
            owner_id=self.owner_id,
            system=self.system,
            permissions=self.permissions,
        )


async def key_changed(bus: EventBus, lookup: str) -> None:
    """Tell every worker (this one at once) to forget the key; call after the commit."""
    for cache in tuple(_live_caches):
        if cache.bus is bus:
            cache.forget(lookup)
    await bus.signal_committed(KEY_CHANGED_SIGNAL, {"lookup": lookup})


async def owner_changed(bus: EventBus, owner_id: str) -> None:
    """Tell every worker (this one at once) to forget every key of this owner (disabled or
    enabled again); call after the commit."""
    for cache in tuple(_live_caches):
        if cache.bus is bus:
            cache.forget_owner(owner_id)
    await bus.signal_committed(KEY_CHANGED_SIGNAL, {"owner_id": owner_id})


class KeyCache:
    """Key snapshots by lookup, plus the system keys; a change anywhere evicts everywhere.

    The TTL only bounds staleness when a signal is lost (a worker's Redis link was down,
    or a CLI without Redis changed the key). Unknown lookups are not cached, so a new key
    works at once and guessing cannot fill memory.
    """

    def __init__(
        self,
        bus: EventBus,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        system_keys: Sequence[SystemKey] = (),
        ttl_seconds: float = 30.0,
        max_entries: int = 10_000,
        on_use: Callable[[str, datetime], None] | None = None,
    ) -> None:
        self.bus = bus
        self.sessionmaker = sessionmaker
        self.system_keys = tuple(system_keys)
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.on_use = on_use
        self._entries: OrderedDict[str, tuple[float, KeySnapshot]] = OrderedDict()
        # Bumped by every eviction: a load that began before one must not store its result.
        self._epoch = 0
        self._unsubscribe = bus.on_signal(KEY_CHANGED_SIGNAL, self._on_changed)
        _live_caches.add(self)

    async def get(
        self, session: AsyncSession | None, lookup: str, *, fresh: bool = False
    ) -> KeySnapshot | None:
        """The key with this lookup, from cache (unless `fresh`) or database; None if none.
        Without a `session`, one is opened only on a miss: a hit costs no session."""
        now = time.monotonic()
        hit = None if fresh else self._entries.get(lookup)
        if hit is not None and hit[0] > now:
            self._entries.move_to_end(lookup)
            return hit[1]
        epoch = self._epoch
        query = (
            select(ApiKey, User.disabled_at)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.lookup == lookup)
        )
        if session is None:
            async with self.sessionmaker() as own:
                row = (await own.execute(query)).first()
        else:
            row = (await session.execute(query)).first()
        if row is None:
            self._entries.pop(lookup, None)
            return None
        key, owner_disabled_at = row
        snapshot = KeySnapshot.of(key, owner_disabled=owner_disabled_at is not None)
        if epoch == self._epoch:
            self._entries[lookup] = (now + self.ttl, snapshot)
            self._entries.move_to_end(lookup)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return snapshot

    def forget(self, lookup: str) -> None:
        """Drop one key from this process's cache."""
        self._epoch += 1
        self._entries.pop(lookup, None)

    def forget_owner(self, owner_id: str) -> None:
        """Drop every key of one owner from this process's cache."""
        self._epoch += 1
        for lookup in [k for k, (_, snap) in self._entries.items() if snap.owner_id == owner_id]:
            del self._entries[lookup]

    async def changed(self, lookup: str) -> None:
        """Tell every worker (this one at once) to forget the key."""
        await key_changed(self.bus, lookup)

    def touch(self, key_id: str, moment: datetime) -> None:
        """Note a use of the key (for its `last_used_at`); without `on_use`, nothing is kept."""
        if self.on_use is not None:
            self.on_use(key_id, moment)

    async def close(self) -> None:
        """Stop listening for changes."""
        self._unsubscribe()
        _live_caches.discard(self)

    def _on_changed(self, payload: dict[str, Any]) -> None:
        lookup, owner_id = payload.get("lookup"), payload.get("owner_id")
        if isinstance(lookup, str):
            self.forget(lookup)
        if isinstance(owner_id, str):
            self.forget_owner(owner_id)
