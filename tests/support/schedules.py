"""Schedules in tests: a clock the test sets and moves, and schedules made over the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from relaychat.services import Services
from tests.support.factories import TestUser

# A Monday, well away from any clock change.
START = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)


class ManualClock:
    """The time, as the test says: set once, moved on by hand."""

    def __init__(self, now: datetime = START) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


async def manual_time(services: Services, now: datetime = START) -> ManualClock:
    """Stop the background scheduler (the test runs ticks itself) and set the time."""
    await services.scheduler.close()
    clock = ManualClock(now)
    services.clock.use(clock.now)
    return clock


async def make_schedule(client: httpx.AsyncClient, user: TestUser, **fields: Any) -> dict[str, Any]:
    body = {"name": "daily", "prompt": "Good morning! What is on today?", **fields}
    response = await client.post("/api/schedules", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def runs_of(
    client: httpx.AsyncClient, user: TestUser, schedule_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/api/schedules/{schedule_id}/runs", headers=user.headers)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["runs"]
    return result
