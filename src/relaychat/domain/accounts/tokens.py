"""Access tokens (short-lived JWTs) and opaque refresh-token secrets."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from relaychat.errors import InvalidToken

_ALGORITHM = "HS256"
_ISSUER = "relaychat"


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    role: str
    expires_at: datetime


class AccessTokens:
    """Signs and checks access tokens with one HMAC key."""

    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def issue(self, user_id: str, role: str) -> str:
        """A signed token for the user, valid for `ttl_seconds`."""
        now = datetime.now(UTC)
        payload = {
            "iss": _ISSUER,
            "sub": user_id,
            "role": role,
            "typ": "access",
            "iat": now,
            "exp": now + timedelta(seconds=self.ttl_seconds),
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(payload, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid access token; InvalidToken for anything else."""
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"access token rejected: {exc}") from exc
        if payload.get("typ") != "access":
            raise InvalidToken("not an access token")
        return AccessClaims(
            user_id=str(payload["sub"]),
            role=str(payload.get("role", "user")),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
        )


def new_refresh_secret() -> str:
    """A 256-bit random secret for a refresh cookie."""
    return secrets.token_urlsafe(32)


def hash_refresh_secret(secret: str) -> str:
    """What is stored for a refresh secret: its SHA-256, so a database leak yields no sessions."""
    return hashlib.sha256(secret.encode()).hexdigest()
