"""The shared heartbeat timer, on a loop whose clock only moves when the test says so."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from relaychat.realtime.heartbeat import Heartbeat, shared_heartbeat


class ManualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is `now`: timers fire once the test advances past them."""

    now = 1000.0

    def time(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for _ in range(3):  # let due timers and what they wake run
            await asyncio.sleep(0)

    def live_timers(self) -> int:
        # The loop's timer heap is CPython's private state, left out of typeshed; what it
        # holds is exactly what this test counts.
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        return sum(not handle.cancelled() for handle in scheduled)


def run(test: Callable[[ManualClockLoop], Awaitable[None]]) -> None:
    loop = ManualClockLoop()
    try:
        loop.run_until_complete(test(loop))
    finally:
        loop.close()


class Member:
    def __init__(self) -> None:
        self.pings = 0

    def heartbeat_due(self) -> None:
        self.pings += 1


def test_an_idle_member_is_due_after_each_interval_of_silence() -> None:
    async def test(loop: ManualClockLoop) -> None:
        heartbeat, member = Heartbeat(15), Member()
        heartbeat.touch(member)
        await loop.advance(14.9)
        assert member.pings == 0
        await loop.advance(0.1)
        assert member.pings == 1
        # Not again until it has sent its ping (touch) and been silent a whole interval.
        await loop.advance(30)
        assert member.pings == 1
        heartbeat.touch(member)
        await loop.advance(14.9)
        assert member.pings == 1
        await loop.advance(0.1)
        assert member.pings == 2

    run(test)


def test_activity_postpones_the_ping() -> None:
    async def test(loop: ManualClockLoop) -> None:
        heartbeat, busy, idle = Heartbeat(15), Member(), Member()
        heartbeat.touch(busy)
        heartbeat.touch(idle)
        for _ in range(10):
            await loop.advance(10)
            heartbeat.touch(busy)
        assert (busy.pings, idle.pings) == (0, 1)
        await loop.advance(15)
        assert busy.pings == 1

    run(test)


def test_one_timer_for_all_members_and_none_when_empty() -> None:
    async def test(loop: ManualClockLoop) -> None:
        heartbeat = Heartbeat(15)
        members = [Member() for _ in range(100)]
        for i, member in enumerate(members):
            heartbeat.touch(member)
            await loop.advance(0.1 if i % 2 else 0)
        assert loop.live_timers() == 1
        heartbeat.discard(members[0])
        await loop.advance(15)
        assert members[0].pings == 0
        assert all(m.pings == 1 for m in members[1:])
        for member in members:
            heartbeat.discard(member)
        assert len(heartbeat) == 0
        assert loop.live_timers() == 0
        await loop.advance(100)
        assert sum(m.pings for m in members) == 99

    run(test)


def test_a_failing_member_does_not_stop_the_others() -> None:
    class Broken(Member):
        def heartbeat_due(self) -> None:
            raise RuntimeError("broken")

    async def test(loop: ManualClockLoop) -> None:
        heartbeat, broken, fine = Heartbeat(1), Broken(), Member()
        heartbeat.touch(broken)
        heartbeat.touch(fine)
        await loop.advance(1)
        assert fine.pings == 1

    run(test)


def test_shared_heartbeat_is_one_per_loop_and_interval() -> None:
    async def get(interval: float) -> Heartbeat:
        return shared_heartbeat(interval)

    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        a = first.run_until_complete(get(15))
        assert first.run_until_complete(get(15)) is a
        assert first.run_until_complete(get(5)) is not a
        assert second.run_until_complete(get(15)) is not a
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("interval", [0, -1])
def test_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Heartbeat(interval)
