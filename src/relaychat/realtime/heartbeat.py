"""One timer per event loop and interval that tells idle streams it is time for a ping.

A timer (or an `asyncio.timeout`) per open stream costs memory on every idle connection
and churns on every event sent. Instead each stream reports when it last sent something;
streams are kept in that order, so only the oldest one's deadline needs a timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Protocol
from weakref import WeakKeyDictionary

logger = logging.getLogger(__name__)

_SLACK = 0.001  # seconds


class Beating(Protocol):
    """A stream the heartbeat watches."""

    def heartbeat_due(self) -> None:
        """Nothing was sent for a whole interval: send a ping soon (must not block)."""


class Heartbeat:
    """Calls `heartbeat_due` on members that have not been `touch`ed for `interval` seconds.

    Create with `shared_heartbeat`; use from the event loop it belongs to only.
    """

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, not {interval}")
        self.interval = interval
        # Member -> loop time of its last activity, oldest first: OrderedDict moves a key
        # to the end in O(1), where a plain dict would need a delete and an insert.
        self._last: OrderedDict[Beating, float] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._last)

    def touch(self, member: Beating) -> None:
        """`member` just sent something (or started): its next ping is an interval away."""
        last = self._last
        if member in last:
            last.move_to_end(member)
        last[member] = asyncio.get_running_loop().time()
        if self._timer is None:
            self._schedule()

    def discard(self, member: Beating) -> None:
        """Stop watching `member` (its stream ended)."""
        self._last.pop(member, None)
        if not self._last and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        # Touching a member only ever delays its deadline, so a timer set for the oldest
        # one may fire early but never late; _fire then just sets the next one.
        oldest = next(iter(self._last.values()))
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(oldest + self.interval, self._fire)

    def _fire(self) -> None:
        self._timer = None
        # uvloop rounds timers to whole milliseconds, so one may fire a little early:
        # counted as due rather than re-armed to spin until the clock catches up.
        due_since = asyncio.get_running_loop().time() - self.interval + _SLACK
        last = self._last
        while last:
            member, at = next(iter(last.items()))
            if at > due_since:
                break
            # Out until it sends its ping and touches again: never pinged twice meanwhile.
            del last[member]
            try:
                member.heartbeat_due()
            except Exception:
                logger.exception("a stream failed to take its heartbeat")
        if last:
            self._schedule()


# Keyed by loop so that loops (one per test, say) never share a timer. An idle heartbeat
# holds no reference to its loop, so a finished loop's entry goes away with it.
_shared: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Heartbeat]] = WeakKeyDictionary()


def shared_heartbeat(interval: float) -> Heartbeat:
    """The running loop's heartbeat for `interval`, created on first use."""
    loop = asyncio.get_running_loop()
    by_interval = _shared.get(loop)
    if by_interval is None:
        by_interval = _shared[loop] = {}
    heartbeat = by_interval.get(interval)
    if heartbeat is None:
        heartbeat = by_interval[interval] = Heartbeat(interval)
    return heartbeat
