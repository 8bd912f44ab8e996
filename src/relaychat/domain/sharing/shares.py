"""Share links: snapshot a branch, list and revoke the owner's links, open one by its token.

A link is `/s/<token>`, the token 256 random bits (`secrets.token_urlsafe(32)`). Only its
SHA-256 is stored, like an API key's secret: the owner sees the link once, when it is
made, and lists their links by id and the token's first characters. A lookup is by the
digest, so no comparison ever runs on the secret itself.

The snapshot is a copy of the messages from the root of the tree to the chosen message,
made in the same transaction as the share: what is written to the conversation afterwards
(replies, edits, other branches) never reaches the page. External senders' phone numbers
and API key names are copied only when the sharer opts in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.ids import new_id
from relaychat.domain.messaging.messages import list_messages
from relaychat.errors import ErrorCode, MessageNotFound, NotFound, Unprocessable
from relaychat.statuses import MessageRole
from relaychat.storage.models import ApiKey, Conversation, Message, Share, SharedMessage, User

TOKEN_BYTES = 32
# What `secrets.token_urlsafe(TOKEN_BYTES)` gives: anything else is no token of ours, and
# is refused before the database is asked.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
HINT_LENGTH = 6
# Column widths of shared_messages (storage/models.py).
_LABEL_LENGTH = 200
_PHONE_LENGTH = 64


class ShareNotFound(NotFound):
    code = ErrorCode.SHARE_NOT_FOUND
    title = "Share link not found"


class NothingToShare(Unprocessable):
    code = ErrorCode.NOTHING_TO_SHARE
    title = "The conversation has no message to share yet"


def new_token() -> str:
    """A share link's secret: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    """What the table keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewShare:
    """A share just made, with the token its link needs (never stored, never shown again)."""

    share: Share
    token: str


@dataclass(frozen=True)
class SharedPage:
    """What `GET /s/{token}` shows: the share and its snapshot, oldest message first."""

    share: Share
    messages: Sequence[SharedMessage]


def visible_leaf(rows: Sequence[Message]) -> Message | None:
    """The last message of the branch the chat shows by default: from the newest root, the
    newest child at every fork (rows in creation order, as `list_messages` gives them)."""
    newest_child: dict[str | None, Message] = {}
    for row in rows:
        newest_child[row.parent_message_id] = row
    leaf = newest_child.get(None)
    while leaf is not None and leaf.id in newest_child:
        leaf = newest_child[leaf.id]
    return leaf


def branch_to(rows: Sequence[Message], leaf: Message) -> list[Message]:
    """The messages from the root of the tree down to `leaf`, oldest first."""
    by_id = {row.id: row for row in rows}
    path = [leaf]
    while path[-1].parent_message_id in by_id and len(path) <= len(rows):
        path.append(by_id[path[-1].parent_message_id])
    path.reverse()
    return path


async def _key_names(
    session: AsyncSession, owner_id: str, key_ids: Iterable[str]
) -> dict[str, str]:
    """The names of the owner's own keys among `key_ids`; another user's key (an admin's
    system key) keeps its name to itself."""
    wanted = {k for k in key_ids if not k.startswith("env:")}
    if not wanted:
        return {}
    found = await session.execute(
        select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(wanted), ApiKey.user_id == owner_id)
    )
    return dict(found.all())


def _key_label(key_id: str | None, names: dict[str, str]) -> str | None:
    if key_id is None:
        return None
    if key_id.startswith("env:"):
        return "system key"
    return names.get(key_id, "API key")


def _text(value: object, length: int) -> str | None:
    return str(value)[:length] if isinstance(value, str | int) and str(value) else None


def _copy(
    message: Message,
    share_id: str,
    position: int,
    *,
    phone_numbers: bool,
    key_names: dict[str, str] | None,
) -> SharedMessage:
    """The snapshot's copy of one message, with only the sender details opted into."""
    meta = message.meta or {}
    source = _text(meta.get("source"), _LABEL_LENGTH)
    phone = _text(meta.get("phoneNumber"), _PHONE_LENGTH) if phone_numbers else None
    key_name = None
    if message.role == MessageRole.EXTERNAL and key_names is not None:
        key_name = _key_label(message.api_key_id, key_names)
    if message.role == MessageRole.EXTERNAL:
        # An external message's sender label is its source, else its key's name: the name
        # is not shared unless asked for.
        author = source or (message.sender if key_names is not None else None) or "External"
    elif message.role == MessageRole.USER:
        author = message.sender or "User"
    elif message.role == MessageRole.ASSISTANT:
        author = message.sender or message.model or "Assistant"
    else:
        author = str(message.role).capitalize()
    return SharedMessage(
        share_id=share_id,
        position=position,
        role=message.role,
        author=author[:_LABEL_LENGTH],
        content=message.content or [],
        text=message.text or "",
        model=message.model,
        status=message.status,
        source=source,
        phone_number=phone,
        key_name=key_name,
        created_at=message.created_at,
    )


async def create_share(
    session: AsyncSession,
    conversation: Conversation,
    *,
    message_id: str | None = None,
    include_phone_numbers: bool = False,
    include_key_names: bool = False,
) -> NewShare:
    """Snapshot the branch ending at `message_id` (default: the branch the chat shows) and
    make a link to it. A message not in this conversation is 404 `message_not_found`; a
    conversation without messages is 422 `nothing_to_share`."""
    rows = await list_messages(session, conversation)
    if message_id is not None:
        leaf = next((row for row in rows if row.id == message_id), None)
        if leaf is None:
            raise MessageNotFound()
    else:
        leaf = visible_leaf(rows)
        if leaf is None:
            raise NothingToShare()
    path = branch_to(rows, leaf)
    key_names = None
    if include_key_names:
        key_ids = (m.api_key_id for m in path if m.api_key_id)
        key_names = await _key_names(session, conversation.user_id, key_ids)
    token = new_token()
    share = Share(
        id=new_id(),
        user_id=conversation.user_id,
        conversation_id=conversation.id,
        token_hash=token_digest(token),
        token_hint=token[:HINT_LENGTH],
        title=conversation.title,
        message_id=leaf.id,
        message_count=len(path),
        include_phone_numbers=include_phone_numbers,
        include_key_names=include_key_names,
    )
    session.add(share)
    await session.flush()  # the share's row before its messages' (their foreign key)
    session.add_all(
        _copy(m, share.id, i, phone_numbers=include_phone_numbers, key_names=key_names)
        for i, m in enumerate(path)
    )
    await session.commit()
    return NewShare(share, token)


async def list_shares(
    session: AsyncSession, user_id: str, *, conversation_id: str | None = None
) -> Sequence[Share]:
    """The user's share links, newest first; only one conversation's when it is named."""
    query = select(Share).where(Share.user_id == user_id)
    if conversation_id is not None:
        query = query.where(Share.conversation_id == conversation_id)
    query = query.order_by(Share.created_at.desc(), Share.id)
    return (await session.scalars(query)).all()


async def revoke_share(session: AsyncSession, user_id: str, share_id: str) -> None:
    """Delete the user's share link and its snapshot: its page is 404 from now on.
    Another user's share is reported as missing."""
    deleted = await session.execute(
        delete(Share).where(Share.id == share_id, Share.user_id == user_id)
    )
    if not deleted.rowcount:  # type: ignore[attr-defined]
        await session.rollback()
        raise ShareNotFound()
    await session.commit()


async def open_share(session: AsyncSession, token: str) -> SharedPage:
    """The share a link's token names, with its snapshot. A revoked share, one of a deleted
    conversation and one whose owner an admin disabled are all 404, as is anything that is
    not a token."""
    if not _TOKEN_SHAPE.fullmatch(token):
        raise ShareNotFound()
    share = await session.scalar(
        select(Share)
        .join(User, User.id == Share.user_id)
        .where(Share.token_hash == token_digest(token), User.disabled_at.is_(None))
    )
    if share is None:
        raise ShareNotFound()
    messages = await session.scalars(
        select(SharedMessage)
        .where(SharedMessage.share_id == share.id)
        .order_by(SharedMessage.position)
    )
    return SharedPage(share, messages.all())
