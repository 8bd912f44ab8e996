"""Which enabled webhook endpoints hear of a user's and a key's events: a per-process cache,
emptied on every worker when any endpoint changes.

Every message (a person's, an external one, a reply's end) asks this, and almost always
finds nothing; the SELECT it replaces was ~0.9 ms of a person's message on SQLite.

Changes are noticed by the ORM, not by each caller: a flush that adds or deletes an
endpoint, or changes what routes to it (`enabled`, `events`, its owner or key), or deletes
a user or a key (their endpoints go with them) marks the session; when that transaction
commits, this process's cache is emptied at once and a bus signal empties the others'.
The cache rides in `session.info` (`ROUTES`), as the outbox's doorbell does, so a session
from a sessionmaker without it (the CLI) changes nothing here; there the TTL bounds how
long another process may route by the old endpoints.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    Executable,
    bindparam,
    event,
    inspect,
    or_,
    select,
)
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from relaychat.realtime.bus import EventBus
from relaychat.storage.models import ApiKey, User, WebhookEndpoint
from relaychat.storage.tables import WEBHOOK_ENDPOINTS

ROUTES_CHANGED_SIGNAL = "webhook_endpoint.changed"
# session.info keys: the cache a sessionmaker was built with, and "this transaction changed
# an endpoint".
ROUTES = "webhook_routes"
_CHANGED = "webhook_routes_changed"

# What a change must touch to matter here; a delivery's bookkeeping (`failing_since`,
# `updated_at`) does not.
_ROUTING_COLUMNS = ("enabled", "events", "user_id", "api_key_id")


# The enabled endpoints that hear of these users' and keys' events: each user's own (tied
# to no key) and those tied to one of the keys.
_ENDPOINTS_OF = select(
    WEBHOOK_ENDPOINTS.c.id,
    WEBHOOK_ENDPOINTS.c.user_id,
    WEBHOOK_ENDPOINTS.c.api_key_id,
    WEBHOOK_ENDPOINTS.c.events,
).where(
    or_(
        WEBHOOK_ENDPOINTS.c.user_id.in_(bindparam("owners", expanding=True))
        & WEBHOOK_ENDPOINTS.c.api_key_id.is_(None),
        WEBHOOK_ENDPOINTS.c.api_key_id.in_(bindparam("keys", expanding=True)),
    ),
    WEBHOOK_ENDPOINTS.c.enabled,
)


@dataclass(frozen=True, slots=True)
class Route:
    """An enabled endpoint, as much of it as deciding who gets an event needs."""

    id: str
    user_id: str
    api_key_id: str | None
    events: frozenset[str]


# The events of a user's messages caused by a key (or by nobody: None).
Scope = tuple[str, str | None]


class Executor(Protocol):
    """An AsyncSession or an AsyncConnection: all a load needs."""

    async def execute(self, statement: Executable, parameters: dict[str, Any]) -> Result[Any]: ...


async def load(executor: Executor, scopes: Collection[Scope]) -> dict[Scope, tuple[Route, ...]]:
    """The routes of each scope, from the database, with one query."""
    params = {
        "owners": sorted({user_id for user_id, _ in scopes}),
        "keys": sorted({key_id for _, key_id in scopes if key_id is not None}),
    }
    loaded = [
        Route(row.id, row.user_id, row.api_key_id, frozenset(row.events or ()))
        for row in await executor.execute(_ENDPOINTS_OF, params)
    ]
    return {scope: tuple(route for route in loaded if _in_scope(route, scope)) for scope in scopes}


async def routes_of(session: AsyncSession, user_id: str, key_id: str | None) -> tuple[Route, ...]:
    """The routes of one scope: from the session's cache when it has one, unless this very
    transaction has changed an endpoint (the cache cannot know that yet)."""
    routes = session.info.get(ROUTES)
    if isinstance(routes, WebhookRoutes) and not session.info.get(_CHANGED):
        return await routes.of(session, user_id, key_id)
    return (await load(session, [(user_id, key_id)]))[(user_id, key_id)]


def _in_scope(route: Route, scope: Scope) -> bool:
    user_id, key_id = scope
    if route.api_key_id is not None:
        return route.api_key_id == key_id
    return route.user_id == user_id


class WebhookRoutes:
    """Routes by scope (owner, key); any endpoint change anywhere empties every worker's.

    Unknown scopes are loaded and kept (a user with no endpoint is the common case, and
    its empty answer is what saves the query); `max_entries` bounds memory, least
    recently used first out.
    """

    def __init__(
        self, bus: EventBus, *, ttl_seconds: float = 30.0, max_entries: int = 10_000
    ) -> None:
        self.bus = bus
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[Scope, tuple[float, tuple[Route, ...]]] = OrderedDict()
        # Bumped by every eviction: a load that began before one must not store its result.
        self._epoch = 0
        self._signals: set[asyncio.Task[None]] = set()
        # Signals name their sender, which evicted at its commit already.
        self._origin = uuid.uuid4().hex
        self._unsubscribe = bus.on_signal(ROUTES_CHANGED_SIGNAL, self._on_signal)

    async def of(self, executor: Executor, user_id: str, key_id: str | None) -> tuple[Route, ...]:
        """The enabled endpoints that hear of this user's events caused by this key."""
        return (await self.of_many(executor, [(user_id, key_id)]))[(user_id, key_id)]

    async def of_many(
        self, executor: Executor, scopes: Iterable[Scope]
    ) -> dict[Scope, tuple[Route, ...]]:
        """The routes of each scope; the ones not cached are loaded with one query."""
        now = time.monotonic()
        found: dict[Scope, tuple[Route, ...]] = {}
        missing: set[Scope] = set()
        for scope in scopes:
            hit = self._entries.get(scope)
            if hit is not None and hit[0] > now:
                self._entries.move_to_end(scope)
                found[scope] = hit[1]
            else:
                missing.add(scope)
        if not missing:
            return found
        epoch = self._epoch
        for scope, routes in (await load(executor, missing)).items():
            found[scope] = routes
            if epoch == self._epoch:
                self._entries[scope] = (now + self.ttl, routes)
                self._entries.move_to_end(scope)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return found

    def forget_all(self) -> None:
        """Empty this process's cache."""
        self._epoch += 1
        self._entries.clear()

    def changed(self) -> None:
        """An endpoint changed and its transaction committed: empty this process's cache
        now, and every other worker's through the bus."""
        self.forget_all()
        task = asyncio.get_running_loop().create_task(self._broadcast())
        self._signals.add(task)
        task.add_done_callback(self._signals.discard)

    async def close(self) -> None:
        """Stop listening, after the signals still on their way have gone out."""
        self._unsubscribe()
        if self._signals:
            await asyncio.gather(*self._signals, return_exceptions=True)

    async def _broadcast(self) -> None:
        # Lost, the other workers route by the old endpoints until the TTL runs out.
        await self.bus.signal_committed(ROUTES_CHANGED_SIGNAL, {"origin": self._origin})

    def _on_signal(self, payload: dict[str, Any]) -> None:
        if payload.get("origin") != self._origin:
            self.forget_all()


def _changes_routes(instance: object, deleted: bool) -> bool:
    if isinstance(instance, (User, ApiKey)):
        return deleted
    if not isinstance(instance, WebhookEndpoint):
        return False
    if deleted:
        return True
    state = inspect(instance)
    return state.pending or any(
        state.attrs[name].history.has_changes() for name in _ROUTING_COLUMNS
    )


@event.listens_for(Session, "before_flush")
def _note_changes(session: Session, _context: object, _instances: object) -> None:
    if ROUTES not in session.info or session.info.get(_CHANGED):
        return
    if any(_changes_routes(obj, True) for obj in session.deleted) or any(
        _changes_routes(obj, False) for obj in (*session.new, *session.dirty)
    ):
        session.info[_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _evict_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: the outer transaction decides
    if session.info.pop(_CHANGED, False):
        routes = session.info.get(ROUTES)
        if isinstance(routes, WebhookRoutes):
            routes.changed()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_CHANGED, None)
