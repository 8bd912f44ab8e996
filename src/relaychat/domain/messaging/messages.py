"""Messages: a tree of rows per conversation, listed in creation order.

A message without an explicit parent answers the conversation's latest one. Choosing
that parent and inserting the child happen under the conversation's lock (see
`lock_thread`), so concurrent posts form one chain in arrival order instead of forking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from relaychat.domain.ids import new_id
from relaychat.errors import MessageNotFound, ParentNotInConversation
from relaychat.statuses import MessageRole, MessageStatus
from relaychat.storage.models import Conversation, Message
from relaychat.storage.tables import CONVERSATIONS, MESSAGES
from relaychat.storage.types import utcnow

# The finest step both databases store: a timestamp this much later still sorts after.
_TICK = timedelta(microseconds=1)


async def list_messages(session: AsyncSession, conversation: Conversation) -> Sequence[Message]:
    """Every message of the conversation, oldest first."""
    query = (
        select(Message)
        .where(Message.conversation_id == conversation.id)
        .order_by(Message.created_at, Message.id)
    )
    return (await session.scalars(query)).all()


async def get_message(
    session: AsyncSession, conversation: Conversation, message_id: str
) -> Message:
    """One message of the conversation; 404 when it is not in this one."""
    message = await session.get(Message, message_id)
    if message is None or message.conversation_id != conversation.id:
        raise MessageNotFound()
    return message


@dataclass(frozen=True)
class ThreadTip:
    """The latest message of a conversation, read under its lock."""

    message_id: str | None
    created_at: datetime | None

    def next_time(self) -> datetime:
        """A creation time for the next message: now, but never at or before the tip, so
        "latest" keeps meaning the last one written even if the clock steps back or
        another host's clock runs ahead."""
        return later_than(self.created_at)


def later_than(moment: datetime | None) -> datetime:
    """The current time, or just after `moment` when the clock has not passed it."""
    now = utcnow()
    if moment is not None and now <= moment:
        return moment + _TICK
    return now


def message_row(
    *,
    conversation_id: str,
    parent_message_id: str | None,
    role: MessageRole,
    sender: str | None,
    content: list[dict[str, Any]],
    text: str,
    status: MessageStatus,
    created_at: datetime,
    metadata: dict[str, Any] | None = None,
    api_key_id: str | None = None,
    endpoint: str | None = None,
    model: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """A new message as the values of its row, every column named: it is inserted with
    a statement on the table (no entity) and read as a `MessageView` as it is. Its id is
    new unless `message_id` was chosen before (a reply that started before it was written)."""
    return {
        "id": message_id or new_id(),
        "conversation_id": conversation_id,
        "parent_message_id": parent_message_id,
        "role": role,
        "sender": sender,
        "content": content,
        "text": text,
        "endpoint": endpoint,
        "model": model,
        "prompt_tokens": None,
        "completion_tokens": None,
        "tokens_estimated": False,
        "finish_reason": None,
        "status": status,
        "error": None,
        "metadata": metadata or {},
        "api_key_id": api_key_id,
        "created_at": created_at,
        "updated_at": created_at,
    }


# Built once: every message a person or a machine posts goes through these.
_LOCK = (
    update(CONVERSATIONS)
    .where(CONVERSATIONS.c.id == bindparam("conversation_id"))
    .values(
        updated_at=bindparam("now"),
        unseen_external=CONVERSATIONS.c.unseen_external + bindparam("unseen", type_=Integer),
    )
    .returning(CONVERSATIONS.c.unseen_external)
)
_TIP = (
    select(MESSAGES.c.id, MESSAGES.c.created_at)
    .where(MESSAGES.c.conversation_id == bindparam("conversation_id"))
    .order_by(MESSAGES.c.created_at.desc(), MESSAGES.c.id.desc())
    .limit(1)
)
_PARENT = select(MESSAGES.c.id).where(
    MESSAGES.c.id == bindparam("parent_id"),
    MESSAGES.c.conversation_id == bindparam("conversation_id"),
)


async def lock_thread(
    session: AsyncSession, conversation: Conversation, *, unseen: bool = False
) -> ThreadTip:
    """Hold the conversation's message chain until this transaction ends; its latest message.

    The lock is a write to the conversation row: a row lock on PostgreSQL, the database
    write lock on SQLite (whose transactions begin at their first write). Whatever is
    read afterwards in the transaction is what the previous holder committed. The write
    marks the conversation updated, so callers need not write its row again; with `unseen`
    it also counts one more external message the owner has not read. The entity is given
    the values written, as if loaded with them (what it says after the commit is right).
    """
    now = utcnow()
    params = {"conversation_id": conversation.id, "now": now, "unseen": 1 if unseen else 0}
    unseen_count = (await session.execute(_LOCK, params)).scalar_one_or_none()
    if unseen_count is not None:
        set_committed_value(conversation, "updated_at", now)
        set_committed_value(conversation, "unseen_external", unseen_count)
    latest = (await session.execute(_TIP, {"conversation_id": conversation.id})).first()
    if latest is None:
        return ThreadTip(None, None)
    return ThreadTip(latest.id, latest.created_at)


async def resolve_parent(
    session: AsyncSession, conversation_id: str, parent_message_id: str | None, tip: ThreadTip
) -> str | None:
    """The parent for a new message: the one named (in this conversation), else the tip."""
    if parent_message_id is None:
        return tip.message_id
    found = await session.scalar(
        _PARENT, {"parent_id": parent_message_id, "conversation_id": conversation_id}
    )
    if found is None:
        raise ParentNotInConversation(field="parent_message_id")
    return str(found)
