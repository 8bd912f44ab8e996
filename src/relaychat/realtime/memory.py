"""The in-process event bus: one worker, a ring buffer of recent events per user."""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

from relaychat.realtime.bus import Envelope, EventBus, LogRead, encode_body
from relaychat.realtime.events import BaseEvent
from relaychat.realtime.sse import EventPosition, with_id


class MemoryEventBus(EventBus):
    """Events and signals delivered within this process; ids look like Redis stream ids."""

    def __init__(self, *, log_size: int = 1000, queue_size: int = 512) -> None:
        super().__init__(queue_size=queue_size)
        self.log_size = log_size
        self._logs: dict[str, deque[Envelope]] = {}
        self._last: dict[str, EventPosition] = {}

    async def publish(self, user_id: str, event: BaseEvent) -> str:
        """Log and deliver `event` synchronously; return its id."""
        return self.publish_nowait(user_id, event)

    def publish_nowait(self, user_id: str, event: BaseEvent) -> str:
        """Log and deliver `event`; return its id."""
        position = self._next_position(user_id)
        event_id = f"{position[0]}-{position[1]}"
        frame = with_id(event_id, encode_body(event))
        envelope = Envelope(event_id, position, event.type, user_id, event.conversation_id, frame)
        log = self._logs.get(user_id)
        if log is None:
            log = self._logs[user_id] = deque(maxlen=self.log_size)
        log.append(envelope)
        self._dispatch(envelope)
        return event_id

    async def signal(self, channel: str, payload: dict[str, Any]) -> None:
        """Deliver `payload` to this process's handlers, as JSON would carry it."""
        # The round trip makes a payload that Redis could not carry fail here too.
        self._deliver_signal(channel, json.loads(json.dumps(payload)))

    def _next_position(self, user_id: str) -> EventPosition:
        # Time-based like Redis, so ids from before a restart are unknown rather than
        # mistaken for new ones; a counter breaks ties and clock steps backwards.
        now_ms = time.time_ns() // 1_000_000
        last = self._last.get(user_id)
        position = (now_ms, 0) if last is None or now_ms > last[0] else (last[0], last[1] + 1)
        self._last[user_id] = position
        return position

    async def _read_log(self, user_id: str, after: EventPosition | None) -> LogRead:
        log = self._logs.get(user_id)
        latest_id = log[-1].id if log else None
        if after is None or not log:
            return LogRead(None, latest_id)
        missed = [envelope for envelope in log if envelope.position > after]
        index = len(log) - len(missed) - 1
        if index < 0 or log[index].position != after:
            return LogRead(None, latest_id)
        return LogRead(missed, latest_id)
