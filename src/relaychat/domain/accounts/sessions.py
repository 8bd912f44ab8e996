"""Sign-in sessions: login, rotating refresh tokens with reuse detection, logout."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.accounts.passwords import verify_password
from relaychat.domain.accounts.tokens import AccessTokens, hash_refresh_secret, new_refresh_secret
from relaychat.domain.accounts.users import find_user_by_email
from relaychat.domain.ids import new_id
from relaychat.errors import InvalidCredentials, InvalidToken, RefreshTokenReused
from relaychat.storage.models import RefreshToken, User
from relaychat.storage.types import utcnow


@dataclass(frozen=True)
class IssuedSession:
    """What a successful login or refresh hands the client."""

    user: User
    access_token: str
    expires_in: int
    refresh_secret: str


async def login(
    session: AsyncSession,
    tokens: AccessTokens,
    *,
    email: str,
    password: str,
    refresh_ttl_seconds: int,
) -> IssuedSession:
    """Check the password and start a new refresh-token family."""
    user = await find_user_by_email(session, email)
    if not await verify_password(user.password_hash if user else None, password) or user is None:
        raise InvalidCredentials()
    secret = await _store_refresh(session, user.id, new_id(), refresh_ttl_seconds)
    await session.commit()
    return IssuedSession(user, tokens.issue(user.id, user.role), tokens.ttl_seconds, secret)


async def refresh(
    session: AsyncSession, tokens: AccessTokens, *, secret: str, refresh_ttl_seconds: int
) -> IssuedSession:
    """Trade a refresh secret for a new access token and the next secret of its family.

    A secret that was already traded in means someone else holds a copy: the whole
    family is revoked and the caller must log in again.
    """
    record = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_secret(secret))
    )
    now = utcnow()
    if record is None or record.revoked_at is not None or record.expires_at <= now:
        raise InvalidToken("refresh token unknown, revoked or expired")
    # Claim the token atomically: of two concurrent refreshes only one may win.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == record.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await _revoke_family(session, record.family_id)
        await session.commit()
        raise RefreshTokenReused()
    user = await session.get(User, record.user_id)
    if user is None:
        raise InvalidToken("user no longer exists")
    next_secret = await _store_refresh(session, user.id, record.family_id, refresh_ttl_seconds)
    await session.commit()
    return IssuedSession(user, tokens.issue(user.id, user.role), tokens.ttl_seconds, next_secret)


async def logout(session: AsyncSession, *, secret: str) -> None:
    """Revoke the family of this refresh secret, if it is one of ours."""
    family_id = await session.scalar(
        select(RefreshToken.family_id).where(RefreshToken.token_hash == hash_refresh_secret(secret))
    )
    if family_id is not None:
        await _revoke_family(session, family_id)
        await session.commit()


async def _store_refresh(
    session: AsyncSession, user_id: str, family_id: str, ttl_seconds: int
) -> str:
    secret = new_refresh_secret()
    session.add(
        RefreshToken(
            id=new_id(),
            family_id=family_id,
            user_id=user_id,
            token_hash=hash_refresh_secret(secret),
            expires_at=utcnow() + timedelta(seconds=ttl_seconds),
        )
    )
    return secret


async def _revoke_family(session: AsyncSession, family_id: str) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
