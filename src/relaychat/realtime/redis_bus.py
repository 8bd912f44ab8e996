"""The Redis event bus: a stream per user as the log, one pub/sub channel per deployment.

Each worker holds a single pub/sub connection and fans events out to its own subscribers,
so browser tabs cost no Redis connections. Publishing is one Lua call per user that appends
that user's events to their stream and publishes their pre-encoded frames as one message,
so pub/sub order is log order.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from relaychat.realtime.bus import Envelope, EventBus, LogRead, encode_body
from relaychat.realtime.events import BaseEvent
from relaychat.realtime.sse import EventPosition, parse_event_id, with_id

logger = logging.getLogger(__name__)

# Several events of one user in one call: with hundreds of replies streaming, the deltas
# published in one round trip would otherwise cost a script call and a pub/sub message
# each, whose encoding and parsing were most of what the bus cost per token.
# KEYS: stream. ARGV: maxlen, ttl ms, channel (not a key: declaring it would break Redis
# Cluster's one-slot rule), routing header, then type, conversation and body of each event.
# The message: B, the header, LF, the ids (space-separated), LF, the bodies back to back
# (their lengths are in the header).
_PUBLISH_LUA = """
local ids, bodies = {}, {}
for i = 5, #ARGV, 3 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                             't', ARGV[i], 'c', ARGV[i + 1], 'f', ARGV[i + 2])
  bodies[#bodies + 1] = ARGV[i + 2]
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3],
           'B' .. ARGV[4] .. '\\n' .. table.concat(ids, ' ') .. '\\n' .. table.concat(bodies))
return ids
"""
_EVENTS = b"B"
_SIGNAL = b"S"
# Events in one script call at most: Redis runs nothing else while a script runs.
_MAX_PER_CALL = 500
_MAX_BACKOFF = 5.0
_START_TIMEOUT = 10.0
# What XRANGE returns on a client without decode_responses (which __init__ insists on).
_Entries = list[tuple[bytes, dict[bytes, bytes]]]


def _text(event_id: Any) -> str:
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)


class _Queued(NamedTuple):
    """An event waiting for the next round trip."""

    user_id: str
    type: str
    conversation_id: str  # "" for an event of the user, not of a conversation
    body: bytes
    future: asyncio.Future[str]


class RedisEventBus(EventBus):
    """Events and signals shared by every worker connected to the same Redis and prefix."""

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        *,
        log_size: int = 1000,
        queue_size: int = 512,
        log_ttl_seconds: int = 24 * 3600,
    ) -> None:
        super().__init__(queue_size=queue_size)
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the event bus needs a Redis client with decode_responses=False")
        self._redis = redis
        self.key_prefix = key_prefix
        self.log_size = log_size
        self.log_ttl_ms = log_ttl_seconds * 1000
        self.channel = f"{key_prefix}realtime"
        self._publish_script = redis.register_script(_PUBLISH_LUA)
        # Publishes waiting for the next round trip (see `publish`), and the task sending them.
        self._queued: list[_Queued] = []
        self._sender: asyncio.Task[None] | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    def log_key(self, user_id: str) -> str:
        """The stream holding `user_id`'s recent events."""
        return f"{self.key_prefix}realtime:log:{user_id}"

    async def start(self) -> None:
        """Subscribe to the channel and return once events are being received."""
        if self._reader is not None:
            return
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(self.channel)
        self._reader = asyncio.create_task(self._read(self._pubsub), name="relaychat-event-bus")
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                await self._listening.wait()
        except BaseException:
            await self.close()
            raise
        await super().start()

    async def close(self) -> None:
        """End every subscription, stop reading and give the connection back to the pool."""
        sender = self._sender
        if sender is not None:  # publishes asked for before closing still go out
            await asyncio.wait([sender])
        await super().close()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait([reader])
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
        self._listening.clear()

    async def publish(self, user_id: str, event: BaseEvent) -> str:
        """Append `event` to the user's stream and announce it to every worker; return its id.

        Publishes are batched: every one asked for while the previous round trip was under
        way (within one turn of the event loop at the least) goes out together, in the
        order asked, one script call per user. With hundreds of replies streaming, one
        round trip carries the deltas of all of them instead of one each.
        """
        return await self._enqueue(user_id, event)

    async def publish_many(self, events: Sequence[tuple[str, BaseEvent]]) -> list[str]:
        """All in one round trip (they are queued together), in order."""
        # Futures, not a task per event: a batch of deltas is hundreds of events.
        futures = [self._enqueue(user_id, event) for user_id, event in events]
        return [await future for future in futures]

    def _enqueue(self, user_id: str, event: BaseEvent) -> asyncio.Future[str]:
        # Encoded here: an event that cannot be sent fails its caller, not the batch.
        queued = _Queued(
            user_id,
            event.type,
            event.conversation_id or "",
            encode_body(event),
            asyncio.get_running_loop().create_future(),
        )
        self._queued.append(queued)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_queued(), name="redis-bus-publish")
        return queued.future

    async def _send_queued(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                calls = self._calls(batch)
                try:
                    results = await self._send(calls)
                except Exception as exc:
                    for queued in batch:
                        if not queued.future.done():
                            queued.future.set_exception(exc)
                    continue
                for (_, events), ids in zip(calls, results, strict=True):
                    for queued, event_id in zip(events, ids, strict=True):
                        if not queued.future.done():  # a caller may have given up waiting
                            queued.future.set_result(_text(event_id))
        finally:
            self._sender = None

    def _calls(self, batch: list[_Queued]) -> list[tuple[list[str | int | bytes], list[_Queued]]]:
        """The script calls publishing `batch`: the events of each user, in order, at most
        `_MAX_PER_CALL` a call (a script blocks Redis while it runs)."""
        by_user: dict[str, list[_Queued]] = {}
        for queued in batch:
            by_user.setdefault(queued.user_id, []).append(queued)
        calls: list[tuple[list[str | int | bytes], list[_Queued]]] = []
        for user_id, queued_events in by_user.items():
            for start in range(0, len(queued_events), _MAX_PER_CALL):
                events = queued_events[start : start + _MAX_PER_CALL]
                header = json.dumps(
                    [user_id, [[e.conversation_id, e.type, len(e.body)] for e in events]]
                )
                args: list[str | int | bytes] = [
                    self.log_size,
                    self.log_ttl_ms,
                    self.channel,
                    header,
                ]
                for e in events:
                    args += (e.type, e.conversation_id, e.body)
                calls.append((args, events))
        return calls

    async def _send(
        self, calls: list[tuple[list[str | int | bytes], list[_Queued]]]
    ) -> list[list[Any]]:
        """Run the script calls; the ids of each."""
        if len(calls) == 1:
            # Alone, without a pipeline: redis-py's pipeline first checks in a round trip of
            # its own that the script is loaded (bench.redis_hop: +0.3-0.5 ms per event).
            args, events = calls[0]
            return [await self._publish_script(keys=[self.log_key(events[0].user_id)], args=args)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for args, events in calls:
                key = self.log_key(events[0].user_id)
                await self._publish_script(keys=[key], args=args, client=pipe)
            return await pipe.execute()

    async def signal(self, channel: str, payload: dict[str, Any]) -> None:
        """Publish `payload` to the handlers of `channel` in every worker, this one included."""
        await self._redis.publish(self.channel, _SIGNAL + json.dumps([channel, payload]).encode())

    async def _read_log(self, user_id: str, after: EventPosition | None) -> LogRead:
        key = self.log_key(user_id)
        if after is not None:
            start = f"{after[0]}-{after[1]}"
            # Reading from `after` inclusive proves in one atomic command that it is still held.
            entries = cast(_Entries, await self._redis.xrange(key, min=start, max="+"))
            if entries and parse_event_id(entries[0][0]) == after:
                missed = [self._envelope(user_id, eid, fields) for eid, fields in entries[1:]]
                return LogRead(missed, missed[-1].id if missed else start)
            if entries:
                return LogRead(None, entries[-1][0].decode())
        newest = cast(_Entries, await self._redis.xrevrange(key, max="+", min="-", count=1))
        return LogRead(None, newest[0][0].decode() if newest else None)

    def _envelope(self, user_id: str, raw_id: bytes, fields: dict[bytes, bytes]) -> Envelope:
        event_id = raw_id.decode()
        return Envelope(
            id=event_id,
            position=parse_event_id(event_id) or (0, 0),
            type=fields[b"t"].decode(),
            user_id=user_id,
            conversation_id=fields[b"c"].decode() or None,
            frame=with_id(event_id, fields[b"f"]),
        )

    async def _read(self, pubsub: PubSub) -> None:
        backoff = 0.1
        while True:
            try:
                async for message in pubsub.listen():
                    kind = message["type"]
                    if kind == "message":
                        self._on_message(message["data"])
                    elif kind == "subscribe":
                        self._on_subscribed()
                    backoff = 0.1
                return  # listen() ends only once nothing is subscribed, i.e. on close
            except asyncio.CancelledError:
                raise
            except Exception:
                # Events published while the link is down never reach our subscribers:
                # end them all so their clients reconnect and replay from the log.
                logger.warning("event bus lost its Redis subscription; retrying", exc_info=True)
                self._drop_all()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)

    def _on_subscribed(self) -> None:
        # redis-py resubscribes silently after a reconnect; anything published in between
        # is lost, so a confirmation after the first one ends every local subscription.
        if self._listening.is_set():
            logger.warning("event bus resubscribed to Redis; dropping local subscribers")
            self._drop_all()
        self._listening.set()

    def _on_message(self, data: bytes) -> None:
        try:
            kind, rest = data[:1], data[1:]
            if kind == _EVENTS:
                self._on_events(rest)
            elif kind == _SIGNAL:
                channel, payload = json.loads(rest)
                self._deliver_signal(channel, payload)
        except Exception:
            logger.exception("event bus could not handle a message from Redis")

    def _on_events(self, message: bytes) -> None:
        """Dispatch the events of one script call (one user's), in order."""
        header, raw_ids, bodies = message.split(b"\n", 2)
        user_id, events = json.loads(header)
        if not self._subscribers.get(user_id):
            return  # nobody here follows that user: nothing to decode
        offset = 0
        for (conversation_id, event_type, size), raw_id in zip(
            events, raw_ids.split(b" "), strict=True
        ):
            body = bodies[offset : offset + size]
            offset += size
            event_id = raw_id.decode()
            self._dispatch(
                Envelope(
                    event_id,
                    parse_event_id(event_id) or (0, 0),
                    event_type,
                    user_id,
                    conversation_id or None,
                    b"id: " + raw_id + b"\n" + body,
                )
            )
