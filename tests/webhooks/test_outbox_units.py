"""The pieces under the outbox: schedule parsing, delays, secrets at rest, signatures."""

from __future__ import annotations

import base64
import stat
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError
from standardwebhooks import Webhook

from relaychat.crypto import SecretBox, SecretUnreadable
from relaychat.domain.outbound.webhooks import new_secret, sign
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


def test_signature_is_standard_webhooks() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    now = int(time.time())
    body = '{"type":"message.created","timestamp":"x","data":{"é":1}}'
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, "msg_1", now, body),
    }
    assert Webhook(secret).verify(body, headers) == {
        "type": "message.created",
        "timestamp": "x",
        "data": {"é": 1},
    }
    headers["webhook-signature"] = sign(new_secret(), "msg_1", now, body)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(secret).verify(body, headers)


def test_secrets_rotate_and_refuse_unknown_keys() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed = SecretBox([old]).encrypt("whsec_abc")
    assert "whsec_abc" not in sealed
    assert SecretBox([new, old]).decrypt(sealed) == "whsec_abc"  # rotated: old values open
    with pytest.raises(SecretUnreadable):
        SecretBox([new]).decrypt(sealed)
    with pytest.raises(ValueError, match="Fernet"):
        SecretBox(["not-a-key"])


def test_generated_encryption_key_is_kept_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    [key] = settings.resolved_encryption_keys()
    assert Settings(data_dir=tmp_path).resolved_encryption_keys() == [key]
    assert stat.S_IMODE((tmp_path / "encryption_key").stat().st_mode) == 0o600
    SecretBox([key]).decrypt(SecretBox([key]).encrypt("x"))


def test_schedule_starts_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "5,300")
    with pytest.raises(ValidationError, match="starts with 0"):
        Settings()
