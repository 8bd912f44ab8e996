"""Encryption of secrets the server must read back (webhook signing secrets, channel tokens).

Passwords and API keys are hashed, never encrypted: nothing needs them back. A webhook's
signing secret and a Twilio auth token are needed to sign and to call out, so they are
stored encrypted with Fernet (AES-128-CBC + HMAC-SHA256). `ENCRYPTION_KEY` may hold several
keys, newest first: new values use the first, old values still open with the others.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from relaychat.errors import AppError, ErrorCode


class SecretUnreadable(AppError):
    code = ErrorCode.SECRET_UNREADABLE
    status = 500
    title = "A stored secret cannot be decrypted with the configured ENCRYPTION_KEY"


class SecretBox:
    """Encrypts and decrypts short secrets with the configured Fernet keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError as exc:
            raise ValueError(
                "ENCRYPTION_KEY must be Fernet keys (32 url-safe base64 bytes), "
                'e.g. from `python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"`'
            ) from exc

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretUnreadable(
                "the key that encrypted it is not among ENCRYPTION_KEY's keys"
            ) from exc
