"""The pieces under the outbox worker: the retry schedule's parsing, and its delays."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from relaychat.settings import Settings
from relaychat.workers.outbox import MAX_RETRY_AFTER, next_delay
from relaychat.workers.outbox import parse_retry_after as retry_after


def test_schedule_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "0, 2,30")
    assert Settings().webhook_retry_schedule == [0, 2, 30]
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "0,-5")
    with pytest.raises(ValidationError, match="non-negative"):
        Settings()
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "soon")
    with pytest.raises(ValidationError):
        Settings()


def test_default_schedule_is_standard_webhooks() -> None:
    hours = 3600
    assert Settings().webhook_retry_schedule == [
        0,
        5,
        300,
        1800,
        2 * hours,
        5 * hours,
        10 * hours,
        10 * hours,
    ]


def test_next_delay_jitters_upward_and_ends() -> None:
    schedule = [0, 5, 300]
    delays = {next_delay(schedule, 1, None) for _ in range(50)}
    assert all(d is not None and 5 <= d <= 5.5 for d in delays)
    assert len(delays) > 1  # jittered
    assert next_delay(schedule, 2, 1000) == 1000  # Retry-After beyond the schedule wins
    assert next_delay(schedule, 1, 10**9) == MAX_RETRY_AFTER
    assert next_delay(schedule, 3, None) is None


def test_retry_after_forms() -> None:
    assert retry_after("120") == 120
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # a date in the past
    assert retry_after("soon") is None
    assert retry_after(None) is None


def test_schedule_starts_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "5,300")
    with pytest.raises(ValidationError, match="starts with 0"):
        Settings()
