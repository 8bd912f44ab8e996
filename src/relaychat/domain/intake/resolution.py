"""Whose message is it: the owner of an external message, resolved in a fixed order.

1. `explicit_user`: a `user` (id or email) named in the request, if the key may name one;
2. `conversation_owner`: the owner of the addressed conversation, when it exists;
3. `user_token`: a user's access token sent alongside the key;
4. `request_user`: the user of the request's session cookie;
5. `phone_number`: `metadata.phoneNumber` matched against users' E.164 numbers;
6. `key_owner`: the owner of the key.

A user's (non-system) key acts for its owner only: any other answer is refused, and without
looking up whom a `user` or phone number names, so the answer never depends on whether
another account exists (`can_name_user` lets such a key name its owner, no one else). The phone
number comes before the key's owner because a system key's owner is merely the admin who
made it, while a phone number names a person.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.access.keys import PermissionDenied
from relaychat.domain.accounts.phones import normalize_phone
from relaychat.errors import ConversationNotFound, ErrorCode, Unprocessable, ValidationFailed
from relaychat.storage.models import Conversation, User


class OwnerUnresolved(Unprocessable):
    code = ErrorCode.OWNER_UNRESOLVED
    title = "No user could be found to own this message"


@dataclass(frozen=True)
class Caller:
    """What resolution needs to know about the key and the request."""

    system: bool
    key_owner_id: str | None
    can_name_user: bool
    token_user_id: str | None = None  # from an access token sent alongside the key
    session_user_id: str | None = None  # from the session cookie


@dataclass(frozen=True)
class Resolved:
    user: User
    strategy: str
    phone_number: str | None = None


async def resolve_owner(
    session: AsyncSession,
    caller: Caller,
    *,
    conversation: Conversation | None,
    explicit_user: str | None,
    metadata: dict[str, Any],
    phone_region: str,
) -> Resolved:
    """The message's owner and the strategy that found it; see the module docstring."""
    phone = phone_from_metadata(metadata, phone_region)
    tried: list[str] = []
    candidate: tuple[str, str] | None = None  # (user id, strategy)
    if explicit_user and caller.system:
        user = await find_user(session, explicit_user)
        if user is None:
            raise OwnerUnresolved(f"no user {explicit_user!r}", tried=["explicit_user"])
        candidate = (user.id, "explicit_user")
    elif explicit_user:
        candidate = (await _own_name(session, caller, explicit_user), "explicit_user")
    tried.append("explicit_user")
    if candidate is None and conversation is not None:
        candidate = (conversation.user_id, "conversation_owner")
    tried.append("conversation_owner")
    for user_id, strategy in (
        (caller.token_user_id, "user_token"),
        (caller.session_user_id, "request_user"),
    ):
        if candidate is None and user_id:
            candidate = (user_id, strategy)
        tried.append(strategy)
    if candidate is None and phone:
        query = select(User.id).where(User.phone_number == phone)
        if not caller.system:  # whose number it is, if not the owner's, stays unsaid
            query = query.where(User.id == caller.key_owner_id)
        owner_id = await session.scalar(query)
        if owner_id is not None:
            candidate = (owner_id, "phone_number")
    tried.append("phone_number")
    if candidate is None and caller.key_owner_id:
        candidate = (caller.key_owner_id, "key_owner")
    tried.append("key_owner")
    if candidate is None:
        raise OwnerUnresolved(f"tried {', '.join(tried)}; none named a user", tried=tried)

    user_id, strategy = candidate
    if not caller.system and user_id != caller.key_owner_id:
        # A user's key reaching someone else's conversation learns nothing about it.
        if strategy == "conversation_owner":
            raise ConversationNotFound()
        raise PermissionDenied("a user's key acts for its owner only", rule="owner")
    user = await session.get(User, user_id)
    if user is None:
        raise OwnerUnresolved("the resolved user no longer exists", tried=tried)
    return Resolved(user, strategy, phone)


async def _own_name(session: AsyncSession, caller: Caller, ref: str) -> str:
    """The owner of a user's key, if `ref` names them (id or email); refused otherwise,
    without looking anyone else up, so the answer never says whether an account exists."""
    if not caller.can_name_user:
        raise PermissionDenied("this key may not name a user", rule="can_name_user")
    owner = await session.get(User, caller.key_owner_id) if caller.key_owner_id else None
    if owner is None or not (
        hmac.compare_digest(ref.encode(), owner.id.encode())
        or hmac.compare_digest(ref.strip().lower().encode(), owner.email.lower().encode())
    ):
        raise PermissionDenied("a user's key acts for its owner only", rule="owner")
    return owner.id


def phone_from_metadata(metadata: dict[str, Any], region: str) -> str | None:
    """`metadata.phoneNumber` in E.164, None when absent; invalid numbers are refused."""
    raw = metadata.get("phoneNumber")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise ValidationFailed(
            "metadata.phoneNumber must be a string", field="metadata.phoneNumber"
        )
    return normalize_phone(raw, region)


async def find_user(session: AsyncSession, ref: str) -> User | None:
    return await session.scalar(select(User).where(or_(User.id == ref, User.email == ref.lower())))
