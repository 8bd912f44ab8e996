"""The time of a process, read in one place, so tests can move it instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from relaychat.storage.types import utcnow


class Clock:
    """What time it is for the parts that plan by it (the scheduler, the schedules API)."""

    def __init__(self, now: Callable[[], datetime] = utcnow) -> None:
        self._now = now

    def now(self) -> datetime:
        """The current time, timezone-aware in UTC."""
        return self._now()

    def use(self, now: Callable[[], datetime]) -> None:
        """Read the time from `now` from here on (tests: a time they set and advance)."""
        self._now = now
