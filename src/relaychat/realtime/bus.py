"""The event bus interface, the envelope it carries, and per-subscriber delivery."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Any, NamedTuple

from relaychat.realtime.events import BaseEvent, Reset
from relaychat.realtime.sse import EventPosition, format_frame, parse_event_id

logger = logging.getLogger(__name__)

SignalHandler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One published event on its way out: routing fields plus its SSE frame, encoded once.

    `user_id` routes the event and never appears in `frame`, which is what clients receive.
    """

    id: str
    position: EventPosition
    type: str
    user_id: str
    conversation_id: str | None
    frame: bytes


class LogRead(NamedTuple):
    """What the event log holds after a client's Last-Event-ID."""

    # None when the id is no longer (or never was) in the log: the client must reset.
    missed: list[Envelope] | None
    latest_id: str | None


def encode_body(event: BaseEvent) -> bytes:
    """The `event:` and `data:` lines of `event`; the bus prefixes the id it assigns.

    Compact JSON has no line breaks (they are escaped in strings), so the data is one
    `data:` line, written without `format_frame`'s split: this runs once per token.
    """
    return b"".join(
        (_event_line(event.type), b"data: ", event.__pydantic_serializer__.to_json(event), b"\n\n")
    )


@lru_cache(maxsize=64)
def _event_line(event_type: str) -> bytes:
    return format_frame("", event=event_type).partition(b"data:")[0]


class Subscription:
    """One client's view of a user's events: replay, then live, until closed or dropped.

    Use as `async with bus.subscribe(...) as sub: async for envelope in sub: ...`, or
    drive it by hand with `pop` and `wait` (the SSE stream does, to also wake on a timer).
    """

    # Thousands of these sit idle per worker, one per open event stream: slots, and
    # queues created only while they hold something (an empty deque costs ~600 bytes).
    __slots__ = (
        "_backlog",
        "_bus",
        "_closed",
        "_floor",
        "_limit",
        "_live",
        "_waiter",
        "conversation_id",
        "dropped",
        "last_event_id",
        "user_id",
    )

    def __init__(
        self,
        bus: EventBus,
        user_id: str,
        conversation_id: str | None,
        last_event_id: str | None,
        queue_size: int,
    ) -> None:
        self._bus = bus
        self.user_id = user_id
        self.conversation_id = conversation_id
        self.last_event_id = last_event_id.strip() if last_event_id else None
        self._limit = queue_size
        # Replayed events, then live ones; None whenever empty.
        self._backlog: deque[Envelope] | None = None
        self._live: deque[Envelope] | None = None
        # Live events at or below this position already came from the log (replay race).
        self._floor: EventPosition | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = False

    @property
    def closed(self) -> bool:
        """True once the subscription ended: closed, dropped, or its bus closed."""
        return self._closed

    async def __aenter__(self) -> Subscription:
        # Listen before reading the log, so nothing published meanwhile falls between them.
        self._bus._attach(self)
        try:
            if self.last_event_id is not None:
                await self._catch_up(self.last_event_id)
        except BaseException:
            self._bus._detach(self)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Envelope:
        while True:
            envelope = self.pop()
            if envelope is not None:
                return envelope
            if self._closed:
                raise StopAsyncIteration
            await self.wait()

    def pop(self) -> Envelope | None:
        """The next envelope if one is queued, else None (see `closed` for why)."""
        backlog = self._backlog
        if backlog is not None:
            envelope = backlog.popleft()
            if not backlog:
                self._backlog = None
            return envelope
        live = self._live
        while live:
            envelope = live.popleft()
            if self._floor is not None:
                if envelope.position <= self._floor:
                    continue
                self._floor = envelope.position
            if not live:
                self._live = None
            return envelope
        self._live = None
        return None

    async def wait(self) -> None:
        """Until an envelope is queued, the subscription ends, or `wake` is called."""
        if self._closed or self._backlog or self._live:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def wake(self) -> None:
        """End a pending `wait` without an envelope (the caller has its own reason)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Stop receiving events now; a pending `wait` returns and iteration ends."""
        self._bus._detach(self)
        self._end()

    async def _catch_up(self, last_event_id: str) -> None:
        position = parse_event_id(last_event_id)
        read = await self._bus._read_log(self.user_id, position)
        if read.missed is not None:
            wanted = [e for e in read.missed if self._wants(e)]
            self._backlog = deque(wanted) if wanted else None
            self._floor = read.missed[-1].position if read.missed else position
        else:
            reason = "malformed_id" if position is None else "gap"
            self._floor = parse_event_id(read.latest_id)
            self._backlog = deque([_reset_envelope(self.user_id, reason, read.latest_id)])

    def _wants(self, envelope: Envelope) -> bool:
        return self.conversation_id is None or envelope.conversation_id in (
            self.conversation_id,
            None,
        )

    def _offer(self, envelope: Envelope) -> bool:
        """Queue `envelope` if wanted; False when the queue is full (the caller drops us)."""
        if self._closed or not self._wants(envelope):
            return True
        live = self._live
        if live is None:
            live = self._live = deque()
        elif len(live) >= self._limit:
            return False
        live.append(envelope)
        self.wake()
        return True

    def _end(self, *, dropped: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        self.dropped = dropped
        self._backlog = None
        self._live = None
        self.wake()


def _reset_envelope(user_id: str, reason: str, latest_id: str | None) -> Envelope:
    # The reset carries the newest id in the log, so the client's next reconnect resumes
    # from there; with an empty log an empty id clears the browser's Last-Event-ID.
    event_id = latest_id or ""
    frame = format_frame(Reset(reason=reason).model_dump_json(), event="reset", id=event_id)
    position = parse_event_id(latest_id) or (0, 0)
    return Envelope(event_id, position, "reset", user_id, None, frame)


class _Audience:
    """One user's subscriptions in this process: those to all the user's events, and those
    to one conversation's, by conversation.

    A conversation's event is offered to the first kind and to that conversation's own
    subscribers only. Each /v1 call follows its own conversation's events, so a key with
    200 replies streaming would otherwise offer each of their tokens to all 200 followers.
    """

    __slots__ = ("by_conversation", "everything", "size")

    def __init__(self) -> None:
        self.everything: list[Subscription] = []
        self.by_conversation: dict[str, list[Subscription]] = {}
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[Subscription]:
        yield from self.everything
        for subs in self.by_conversation.values():
            yield from subs

    def add(self, subscription: Subscription) -> None:
        cid = subscription.conversation_id
        subs = self.everything if cid is None else self.by_conversation.setdefault(cid, [])
        subs.append(subscription)
        self.size += 1

    def remove(self, subscription: Subscription) -> bool:
        """Forget `subscription`; False when it was not here."""
        cid = subscription.conversation_id
        subs = self.everything if cid is None else self.by_conversation.get(cid)
        if subs is None or subscription not in subs:
            return False
        subs.remove(subscription)
        if cid is not None and not subs:
            del self.by_conversation[cid]
        self.size -= 1
        return True

    def of(self, conversation_id: str | None) -> Sequence[Subscription]:
        """The subscriptions an event of `conversation_id` (None: of the user) goes to; read
        it before adding or removing any."""
        if not self.by_conversation:
            return self.everything
        if conversation_id is None:
            return list(self)
        followers = self.by_conversation.get(conversation_id)
        return [*self.everything, *followers] if followers else self.everything


class EventBus(ABC):
    """Per-user event streams with replay, plus control signals that reach every worker.

    Implementations provide `publish`, `signal` and `_read_log`, and call `_dispatch` for
    each event that reaches this process and `_deliver_signal` for each signal. Delivery
    to local subscribers, filtering and slow-consumer dropping live here.
    """

    def __init__(self, *, queue_size: int) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[str, _Audience] = {}
        self._handlers: dict[str, list[SignalHandler]] = {}
        self._running = False

    async def start(self) -> None:
        """Begin delivering events; subscriptions are refused before this."""
        self._running = True

    async def close(self) -> None:
        """Stop delivering: every open subscription ends, so its HTTP stream closes."""
        self._running = False
        self._drop_all()

    def end_streams(self) -> None:
        """End every open subscription now (their streams close; clients reconnect with
        Last-Event-ID), while events still flow to anything subscribing later."""
        self._drop_all()

    def end_user_streams(self, user_id: str) -> None:
        """End this process's open subscriptions of one user (their streams close; clients
        reconnect, authenticating again, and replay what they missed)."""
        for sub in self._subscribers.pop(user_id, ()):
            sub._end(dropped=True)

    @abstractmethod
    async def publish(self, user_id: str, event: BaseEvent) -> str:
        """Append `event` to `user_id`'s log and deliver it; return its id."""

    async def publish_many(self, events: Sequence[tuple[str, BaseEvent]]) -> list[str]:
        """`publish` each (user id, event) in order; their ids. A bus that can send them
        together (Redis: one round trip) does; if it fails, none may have been delivered."""
        return [await self.publish(user_id, event) for user_id, event in events]

    def publish_nowait(self, user_id: str, event: BaseEvent) -> str | None:
        """`publish` done at once, by a bus that needs no I/O for it; else None (nothing
        was published: use `publish`)."""
        return None

    def subscribe(
        self,
        user_id: str,
        *,
        conversation_id: str | None = None,
        last_event_id: str | None = None,
    ) -> Subscription:
        """A subscription to `user_id`'s events, replaying those after `last_event_id`."""
        return Subscription(self, user_id, conversation_id, last_event_id, self.queue_size)

    @abstractmethod
    async def signal(self, channel: str, payload: dict[str, Any]) -> None:
        """Send a JSON-serialisable `payload` to the handlers of `channel` in every worker."""

    async def signal_committed(self, channel: str, payload: dict[str, Any]) -> None:
        """`signal` a change that is committed and already applied in this worker, for the
        other workers' caches. If it cannot go out (Redis down), that is logged, not raised:
        their entries expire within their TTL anyway, and raising would answer 500 for a
        change that was made."""
        try:
            await self.signal(channel, payload)
        except Exception:
            logger.exception("could not send %s to the other workers", channel)

    def on_signal(self, channel: str, handler: SignalHandler) -> Callable[[], None]:
        """Call `handler` for each signal on `channel`; returns a function that unregisters it."""
        handlers = self._handlers.setdefault(channel, [])
        handlers.append(handler)

        def unregister() -> None:
            if handler in handlers:
                handlers.remove(handler)

        return unregister

    def subscriber_count(self, user_id: str | None = None) -> int:
        """Open subscriptions in this process, for one user or all (metrics, tests)."""
        if user_id is not None:
            return len(self._subscribers.get(user_id, ()))
        return sum(len(subs) for subs in self._subscribers.values())

    @abstractmethod
    async def _read_log(self, user_id: str, after: EventPosition | None) -> LogRead:
        """The logged events after `after`, if it is still in the log, and the newest id."""

    def _attach(self, subscription: Subscription) -> None:
        if not self._running:
            raise RuntimeError("the event bus is not started")
        audience = self._subscribers.get(subscription.user_id)
        if audience is None:
            audience = self._subscribers[subscription.user_id] = _Audience()
        audience.add(subscription)

    def _detach(self, subscription: Subscription) -> None:
        audience = self._subscribers.get(subscription.user_id)
        if audience is None or not audience.remove(subscription):
            return
        if not audience:
            del self._subscribers[subscription.user_id]

    def _dispatch(self, envelope: Envelope) -> None:
        audience = self._subscribers.get(envelope.user_id)
        if not audience:
            return
        slow = [sub for sub in audience.of(envelope.conversation_id) if not sub._offer(envelope)]
        for sub in slow:
            logger.info("dropping a slow event subscriber of user %s", sub.user_id)
            self._detach(sub)
            sub._end(dropped=True)

    def _drop_all(self) -> None:
        subscribers, self._subscribers = self._subscribers, {}
        for subs in subscribers.values():
            for sub in subs:
                sub._end(dropped=True)

    def _deliver_signal(self, channel: str, payload: dict[str, Any]) -> None:
        for handler in tuple(self._handlers.get(channel, ())):
            try:
                handler(payload)
            except Exception:
                logger.exception("signal handler for %r failed", channel)
