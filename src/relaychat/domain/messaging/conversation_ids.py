"""Conversation ids: what one may look like, and who may hold one that names a phone number.

One rule for every path that creates a conversation (the API, the gateway, channels): an id
is 1 to 128 characters, letters, digits and `._:@+-`, starting with a letter or digit.

By-sender threads are ids that name a phone number: `sms-+14155552671` (the gateway's
threading) or `sms-+14155552671.3f2a9c1b7d4e` (a channel's, see channel_threads). Ids are
global and clients may choose them, so such an id could be taken ahead of the messages it
is meant to receive. Hence:

- a gateway thread (`<source>-<E.164>`) may be created only for the user with that number,
  or, while no user has it, by a system key (which may name anyone);
- a channel thread (`…<E.164>.<tag>`) only by the channel whose tag it carries (which
  decides who owns it).

A refusal never says whether, or by whom, the number is registered.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.errors import Conflict, ErrorCode, Forbidden, Unprocessable
from relaychat.storage.models import Conversation, User

MAX_LENGTH = 128
# Documented in the API schema; enforced by `check_id` so every path answers alike.
ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{{0,{MAX_LENGTH - 1}}}$"
_ID = re.compile(ID_PATTERN.strip("^$"))
# Case-insensitive: `SMS-+1…` is another id, but people have no use for it either.
_PHONE_THREAD = re.compile(
    r"[a-z0-9._:@+-]+?-(\+[1-9][0-9]{1,14})(?:\.([0-9a-f]{12}))?", re.IGNORECASE
)


class InvalidConversationId(Unprocessable):
    code = ErrorCode.INVALID_CONVERSATION_ID
    title = "Invalid conversation id"


class ConversationIdReserved(Forbidden):
    code = ErrorCode.CONVERSATION_ID_RESERVED
    title = "This conversation id is reserved for a sender's thread"


def check_id(conversation_id: str) -> str:
    """The id, if it follows the rule; InvalidConversationId (422) otherwise."""
    if not _ID.fullmatch(conversation_id):
        raise InvalidConversationId(
            f"a conversation id is 1 to {MAX_LENGTH} letters, digits and `._:@+-`, "
            "starting with a letter or digit",
            field="conversation_id",
        )
    return conversation_id


def named_phone(conversation_id: str) -> tuple[str, str | None] | None:
    """`(E.164 number, channel tag or None)` of a thread id; None for any other id."""
    match = _PHONE_THREAD.fullmatch(conversation_id)
    return (match.group(1), match.group(2)) if match else None


async def phone_holder(session: AsyncSession, phone: str) -> str | None:
    """The id of the user whose number this is, if any."""
    return await session.scalar(select(User.id).where(User.phone_number == phone))


async def check_claim(
    session: AsyncSession,
    conversation_id: str,
    owner_id: str,
    *,
    system: bool = False,
    channel_tag: str | None = None,
) -> None:
    """Refuse creating a thread id for anyone but whom it is meant for (module docstring).

    `system`: a system key is creating it; `channel_tag`: a channel with this tag is.
    """
    named = named_phone(conversation_id)
    if named is None:
        return
    phone, tag = named
    if tag is not None:
        if channel_tag is not None and tag.lower() == channel_tag:
            return
    else:
        holder = await phone_holder(session, phone)
        if holder == owner_id or (holder is None and system):
            return
    raise ConversationIdReserved(
        "ids naming a phone number (such as `sms-+15551234567`) are by-sender threads: "
        "only the user with that number may hold one",
        field="conversation_id",
    )


class ConversationThreadTaken(Conflict):
    code = ErrorCode.CONVERSATION_THREAD_TAKEN
    title = "The sender's conversation belongs to another user"


async def check_holder(
    session: AsyncSession, conversation: Conversation, meant_for: str | None = None
) -> None:
    """Refuse delivering into a thread held by anyone but the user it is meant for: the
    user with the number it names, and `meant_for` (whom the sender resolved to), if given.
    The answer names no one."""
    holders = {meant_for} if meant_for is not None else set()
    named = named_phone(conversation.id)
    if named is not None and named[1] is None:
        holder = await phone_holder(session, named[0])
        if holder is not None:
            holders.add(holder)
    if holders - {conversation.user_id}:
        raise ConversationThreadTaken(
            f"conversation {conversation.id} is held by another user; the message was not stored"
        )
