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
    # The sign-in session (refresh-token family) the token was issued to; None in tokens
    # issued before sessions were named.
    session_id: str | None = None
    # The user's session epoch when the token was issued (see standing.py).
    epoch: int = 0


class AccessTokens:
    """Signs and checks access tokens with one HMAC key."""

    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def issue(
        self, user_id: str, role: str, *, session_id: str | None = None, epoch: int = 0
    ) -> str:
        """A signed token for the user's session `session_id`, issued under the user's
        session `epoch`, valid for `ttl_seconds`."""
        now = datetime.now(UTC)
        payload: dict[str, object] = {
            "iss": _ISSUER,
            "sub": user_id,
            "role": role,
            "typ": "access",
            "iat": now,
            "exp": now + timedelta(seconds=self.ttl_seconds),
            "jti": secrets.token_urlsafe(12),
            "sep": epoch,
        }
        if session_id is not None:
            payload["sid"] = session_id
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
        session_id, epoch = payload.get("sid"), payload.get("sep", 0)
        if not isinstance(session_id, str | None) or type(epoch) is not int:
            raise InvalidToken("access token rejected: malformed session claims")
        return AccessClaims(
            user_id=str(payload["sub"]),
            role=str(payload.get("role", "user")),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            session_id=session_id,
            epoch=epoch,
        )


def new_refresh_secret() -> str:
    """A 256-bit random secret for a refresh cookie."""
    return secrets.token_urlsafe(32)


def hash_refresh_secret(secret: str) -> str:
    """What is stored for a refresh secret: its SHA-256, so a database leak yields no sessions."""
    return hashlib.sha256(secret.encode()).hexdigest()
