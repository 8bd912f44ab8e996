"""Events about a change go out after the change commits, never before, never without it.

Code that changes data queues its events on the same session
(`publish_after_commit(session, bus, user_id, event)`); the session publishes them once
its transaction commits, in the order they were queued, before `commit()` returns, and
drops them if it rolls back (storage.db.after_commit says how). So no route has to
remember to publish, a change that failed announces nothing, and a test that reads the
event stream right after the HTTP response sees the event, as before.

Not everything goes through here: events that are not the outcome of a transaction
(streamed tokens, tool calls while a reply is generated) and cross-worker signals
(`bus.signal`) are published directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.realtime.bus import EventBus
from relaychat.realtime.events import BaseEvent
from relaychat.storage.db import after_commit, last_after_commit


@dataclass
class Queued:
    """An event waiting for its commit."""

    # The id the bus gave it, once published (a stream resumed after it sees what followed).
    id: str | None = None


class _Publish:
    """The after-commit callback publishing events queued one after another on one bus,
    in one `publish_many`: a new conversation's call queues four (the conversation, the
    message, the reply's placeholder, generation.started), and on Redis each awaited its
    own round trip, one after another, before the call could answer."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.events: list[tuple[str, BaseEvent | Callable[[], BaseEvent], Queued]] = []

    async def __call__(self) -> None:
        ready = [
            (user_id, event if isinstance(event, BaseEvent) else event())
            for user_id, event, _ in self.events
        ]
        ids = await self.bus.publish_many(ready)
        for (_, _, queued), event_id in zip(self.events, ids, strict=True):
            queued.id = event_id


def publish_after_commit(
    session: AsyncSession,
    bus: EventBus,
    user_id: str,
    event: BaseEvent | Callable[[], BaseEvent],
) -> Queued:
    """Publish `event` to `user_id`'s streams once the session's transaction commits.

    `event` may be a function that builds it: called after the commit, so an event that
    renders a row shows it as committed (defaults and all), as publishing by hand did.
    Events queued one after another (no other callback between them) go out together, in
    order.
    """
    queued = Queued()
    last = last_after_commit(session)
    if isinstance(last, _Publish) and last.bus is bus:
        last.events.append((user_id, event, queued))
        return queued
    publish = _Publish(bus)
    publish.events.append((user_id, event, queued))
    after_commit(session, publish)
    return queued
