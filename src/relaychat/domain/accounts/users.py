"""Accounts: registration, lookup and profile changes."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.accounts.passwords import hash_password
from relaychat.domain.accounts.phones import normalize_phone
from relaychat.domain.ids import new_id
from relaychat.errors import (
    EmailTaken,
    InvalidPhoneNumber,
    PhoneNumberTaken,
    ValidationFailed,
    WeakPassword,
)
from relaychat.statuses import UserRole
from relaychat.storage.models import User

MIN_PASSWORD_LENGTH = 8
# Starts with "!", which no argon2 hash does: no password ever verifies against it.
UNUSABLE_PASSWORD_PREFIX = "!unusable:"
PROVISIONED_EMAIL_DOMAIN = "phone.invalid"


class UserRaced(Exception):
    """Another request provisioned the same phone number a moment ago; try again."""


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively; store them lower-cased."""
    return email.strip().lower()


def is_admin(user: User) -> bool:
    """Whether the user holds the admin role."""
    return user.role == UserRole.ADMIN


def check_password_strength(password: str, *, field: str = "password") -> None:
    """Refuse passwords too short to resist guessing; `field` names the one refused."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(
            f"{field} must be at least {MIN_PASSWORD_LENGTH} characters", field=field
        )


async def create_user(
    session: AsyncSession, *, email: str, name: str, password: str, admin: bool | None = None
) -> User:
    """Store a new user; the first user of an instance is an admin unless `admin` says otherwise."""
    check_password_strength(password)
    email = normalize_email(email)
    if await session.scalar(select(User.id).where(User.email == email)):
        raise EmailTaken(f"{email} is already registered", field="email")
    if admin is None:
        admin = not await session.scalar(select(func.count()).select_from(User))
    user = User(
        id=new_id(),
        email=email,
        name=name.strip(),
        password_hash=await hash_password(password),
        role=UserRole.ADMIN if admin else UserRole.USER,
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:  # a concurrent registration of the same email won the race
        await session.rollback()
        raise EmailTaken(f"{email} is already registered", field="email") from exc
    return user


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this email, if any."""
    return await session.scalar(select(User).where(User.email == normalize_email(email)))


async def list_users(session: AsyncSession) -> Sequence[User]:
    """Every user, oldest first."""
    return (await session.scalars(select(User).order_by(User.created_at, User.id))).all()


async def update_profile(
    session: AsyncSession,
    user: User,
    *,
    changes: dict[str, str | None],
    phone_region: str,
) -> User:
    """Apply name/phone changes; phone numbers are stored as E.164 and unique across users."""
    name = changes.get("name")
    if name is not None and not name.strip():
        raise ValidationFailed("name cannot be blank", field="name")
    if "phone_number" in changes:
        raw = changes["phone_number"]
        try:
            phone = normalize_phone(raw, phone_region) if raw else None
        except InvalidPhoneNumber as exc:
            exc.fields["field"] = "phone_number"
            raise
        if phone is not None:
            owner = await session.scalar(select(User.id).where(User.phone_number == phone))
            if owner is not None and owner != user.id:
                raise PhoneNumberTaken(field="phone_number")
        user.phone_number = phone
    if name is not None:
        user.name = name.strip()
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise PhoneNumberTaken(field="phone_number") from exc
    return user


async def find_user_by_phone(session: AsyncSession, phone: str) -> str | None:
    """The id of the user with this (normalized) phone number."""
    return await session.scalar(select(User.id).where(User.phone_number == phone))


async def provision_phone_user(session: AsyncSession, phone: str, name: str) -> None:
    """Add (flushed, not committed: it goes with the caller's transaction) a user for a
    phone number that messaged a channel: it can't sign in until an admin sets a password.

    Raises `UserRaced`, the session rolled back, when another request added the number
    first.
    """
    session.add(
        User(
            id=new_id(),
            email=f"{phone}@{PROVISIONED_EMAIL_DOMAIN}",
            name=name[:200],
            password_hash=UNUSABLE_PASSWORD_PREFIX + secrets.token_hex(16),
            role=UserRole.USER,
            phone_number=phone,
        )
    )
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise UserRaced() from exc
