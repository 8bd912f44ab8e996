"""Users as admins manage them: listed and searched, promoted and demoted, disabled and
enabled again, never leaving the instance without an enabled admin."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from relaychat.domain.access.key_cache import owner_changed
from relaychat.domain.accounts.sessions import end_sessions
from relaychat.domain.accounts.standing import standing_changed
from relaychat.domain.cursors import decode_cursor, encode_cursor
from relaychat.errors import CannotDisableSelf, LastAdmin, UserNotFound
from relaychat.realtime.bus import EventBus
from relaychat.statuses import UserRole
from relaychat.storage.db import after_commit
from relaychat.storage.models import User
from relaychat.storage.types import utcnow

DEFAULT_PAGE = 50
MAX_PAGE = 200

_OTHER = aliased(User)


@dataclass(frozen=True)
class UserPage:
    users: list[User]
    next_cursor: str | None


def _like_pattern(text: str) -> str:
    """`text` as a LIKE pattern matching it anywhere, its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_users(
    session: AsyncSession,
    *,
    query: str | None = None,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
) -> UserPage:
    """Users oldest first; with `query`, those whose email or name contains it (any case)."""
    limit = max(1, min(limit, MAX_PAGE))
    statement = select(User)
    if query and query.strip():
        pattern = _like_pattern(query.strip())
        statement = statement.where(
            or_(User.email.ilike(pattern, escape="\\"), User.name.ilike(pattern, escape="\\"))
        )
    if cursor:
        moment, last_id = decode_cursor(cursor)
        statement = statement.where(
            or_(User.created_at > moment, and_(User.created_at == moment, User.id > last_id))
        )
    # One extra row says whether another page exists without a count query.
    statement = statement.order_by(User.created_at, User.id).limit(limit + 1)
    rows = list((await session.scalars(statement)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    return UserPage(rows, encode_cursor(last.created_at, last.id) if last else None)


async def update_user(
    session: AsyncSession,
    bus: EventBus,
    actor: User | None,
    user_id: str,
    *,
    role: UserRole | None = None,
    disabled: bool | None = None,
) -> User:
    """Change a user's role or disable or enable the account, as the admin `actor` (None:
    an operator at the command line).

    Disabling ends every session of the user and refuses their API keys, on every worker
    once committed; enabling again lets them sign in (their old sessions stay ended).
    Refused: disabling oneself, and demoting or disabling the last enabled admin.
    """
    target = await session.get(User, user_id)
    if target is None:
        raise UserNotFound(f"no user {user_id!r}", field="user_id")
    if disabled and actor is not None and target.id == actor.id:
        raise CannotDisableSelf("you cannot disable your own account", field="disabled")
    values: dict[str, object] = {}
    if role is not None and role != target.role:
        values["role"] = role
    disabling = disabled is True and target.disabled_at is None
    enabling = disabled is False and target.disabled_at is not None
    if enabling:
        values["disabled_at"] = None
    if not values and not disabling:
        return target
    guard: list[ColumnElement[bool]] = []
    if disabling or values.get("role") == UserRole.USER:
        guard.append(await _keeps_an_enabled_admin(session, target.id))
    if disabling:
        values["disabled_at"] = utcnow()
        written = await end_sessions(session, bus, target.id, values=values, where=guard)
    else:
        result = await session.execute(
            update(User)
            .where(User.id == target.id, *guard)
            .values(**values)
            .execution_options(synchronize_session="fetch")
        )
        written = result.rowcount == 1  # type: ignore[attr-defined]
    if not written:
        raise LastAdmin(
            "the instance must keep an enabled admin: promote another user first",
            field="disabled" if disabling else "role",
        )
    if disabling or enabling:

        async def announce() -> None:
            await owner_changed(bus, target.id)
            if enabling:  # disabling ended the sessions, which announced it already
                await standing_changed(bus, target.id, end_streams=False)

        after_commit(session, announce)
    await session.commit()
    await session.refresh(target)
    return target


async def _keeps_an_enabled_admin(session: AsyncSession, user_id: str) -> ColumnElement[bool]:
    """A condition on the user's row: that demoting or disabling it leaves an enabled admin.

    Evaluated by the UPDATE itself. On PostgreSQL the enabled admins are locked first, so
    two admins demoting each other at once are taken in turn and the second sees the
    first's change; SQLite runs one writer at a time, and its UPDATE reads the latest data.
    """
    enabled_admins = select(User.id).where(User.role == UserRole.ADMIN, User.disabled_at.is_(None))
    await session.execute(enabled_admins.with_for_update())
    another = exists().where(
        _OTHER.role == UserRole.ADMIN, _OTHER.disabled_at.is_(None), _OTHER.id != user_id
    )
    return or_(User.role != UserRole.ADMIN, User.disabled_at.is_not(None), another)
