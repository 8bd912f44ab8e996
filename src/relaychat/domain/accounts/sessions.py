"""Sign-in sessions: login, rotating refresh tokens with reuse detection, logout; ending a
user's sessions everywhere (signing out everywhere, changing the password, disabling)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.accounts.passwords import hash_password, verify_password
from relaychat.domain.accounts.standing import Standing, standing_changed
from relaychat.domain.accounts.tokens import (
    AccessClaims,
    AccessTokens,
    hash_refresh_secret,
    new_refresh_secret,
)
from relaychat.domain.accounts.users import check_password_strength, find_user_by_email
from relaychat.domain.ids import new_id
from relaychat.errors import (
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
    SessionEnded,
    UserDisabled,
    WrongPassword,
)
from relaychat.realtime.bus import EventBus
from relaychat.storage.db import after_commit
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
    # Checked after the password: only someone who knows it learns that the account exists
    # and is disabled.
    if user.disabled_at is not None:
        raise UserDisabled("this account is disabled")
    family_id = new_id()
    secret = await _store_refresh(session, user, family_id, refresh_ttl_seconds)
    await session.commit()
    return IssuedSession(user, _access(tokens, user, family_id), tokens.ttl_seconds, secret)


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
    if user.disabled_at is not None:
        raise UserDisabled("this account is disabled")
    # Ending the sessions revokes the links it sees; one written by a refresh that ran
    # alongside it was not yet there, and carries the old epoch.
    if not Standing.of(user).admits(record.session_epoch, record.family_id):
        raise SessionEnded()
    next_secret = await _store_refresh(session, user, record.family_id, refresh_ttl_seconds)
    await session.commit()
    return IssuedSession(
        user, _access(tokens, user, record.family_id), tokens.ttl_seconds, next_secret
    )


async def logout(session: AsyncSession, *, secret: str) -> None:
    """Revoke the family of this refresh secret, if it is one of ours."""
    family_id = await session.scalar(
        select(RefreshToken.family_id).where(RefreshToken.token_hash == hash_refresh_secret(secret))
    )
    if family_id is not None:
        await _revoke_family(session, family_id)
        await session.commit()


async def sign_out_everywhere(session: AsyncSession, bus: EventBus, user: User) -> None:
    """End every session of the user, the caller's too: no refresh link or access token
    issued so far works any more, on any worker."""
    await end_sessions(session, bus, user.id)
    await session.commit()


async def change_password(
    session: AsyncSession,
    bus: EventBus,
    user: User,
    claims: AccessClaims,
    *,
    current_password: str,
    new_password: str,
) -> None:
    """Set a new password and end every other session of the user; the caller's session
    (that of `claims`) goes on."""
    check_password_strength(new_password, field="new_password")
    if not await verify_password(user.password_hash, current_password):
        raise WrongPassword("the current password is wrong", field="current_password")
    # Only while the caller's own session still counts: one ended a moment ago (by a
    # password change in another session, say) must not come back as the one kept.
    changed = await end_sessions(
        session,
        bus,
        user.id,
        keep=claims.session_id,
        values={"password_hash": await hash_password(new_password)},
        where=[
            or_(
                User.session_epoch <= claims.epoch,
                User.kept_session_id == claims.session_id,
            ),
            User.disabled_at.is_(None),
        ],
    )
    if not changed:
        raise SessionEnded()
    await session.commit()


async def end_sessions(
    session: AsyncSession,
    bus: EventBus,
    user_id: str,
    *,
    keep: str | None = None,
    values: dict[str, Any] | None = None,
    where: Sequence[ColumnElement[bool]] = (),
) -> bool:
    """In the caller's transaction, end every session of the user but `keep`'s: the user's
    epoch moves on (with `values`, more of the user's columns set by the same statement)
    and their refresh families are revoked. Only if `where` holds of the user's row when
    written; False, and nothing written, when it does not.

    Once committed, every worker reads the user's standing again and ends the user's open
    event streams.
    """
    written = await session.execute(
        update(User)
        .where(User.id == user_id, *where)
        .values(
            session_epoch=User.session_epoch + 1,
            kept_session_id=keep,
            **(values or {}),
        )
        .execution_options(synchronize_session="fetch")
    )
    if written.rowcount != 1:  # type: ignore[attr-defined]
        return False
    revoke = update(RefreshToken).where(
        RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
    )
    if keep is not None:
        revoke = revoke.where(RefreshToken.family_id != keep)
    await session.execute(revoke.values(revoked_at=utcnow()))

    async def announce() -> None:
        await standing_changed(bus, user_id, end_streams=True)

    after_commit(session, announce)
    return True


def _access(tokens: AccessTokens, user: User, family_id: str) -> str:
    return tokens.issue(user.id, user.role, session_id=family_id, epoch=user.session_epoch)


async def _store_refresh(
    session: AsyncSession, user: User, family_id: str, ttl_seconds: int
) -> str:
    secret = new_refresh_secret()
    session.add(
        RefreshToken(
            id=new_id(),
            family_id=family_id,
            user_id=user.id,
            token_hash=hash_refresh_secret(secret),
            expires_at=utcnow() + timedelta(seconds=ttl_seconds),
            session_epoch=user.session_epoch,
        )
    )
    return secret


async def _revoke_family(session: AsyncSession, family_id: str) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
