"""Webhook secrets: Standard Webhooks signatures, and secrets at rest sealed with rotating keys."""

from __future__ import annotations

import base64
import stat
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

from relaychat.crypto import SecretBox, SecretUnreadable
from relaychat.domain.outbound.webhooks import new_secret, sign
from relaychat.settings import Settings


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
