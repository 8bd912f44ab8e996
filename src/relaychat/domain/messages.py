"""Messages: a tree of rows per conversation, listed in creation order."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.errors import MessageNotFound, ParentNotInConversation
from relaychat.storage.models import Conversation, Message


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


async def latest_message_id(session: AsyncSession, conversation_id: str) -> str | None:
    """The id of the most recent message in the conversation, if any."""
    return await session.scalar(
        select(Message.id)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    )


async def resolve_parent(
    session: AsyncSession, conversation_id: str, parent_message_id: str | None
) -> str | None:
    """The parent for a new message: the one named (in this conversation), else the latest."""
    if parent_message_id is None:
        return await latest_message_id(session, conversation_id)
    found = await session.scalar(
        select(Message.id).where(
            Message.id == parent_message_id, Message.conversation_id == conversation_id
        )
    )
    if found is None:
        raise ParentNotInConversation(field="parent_message_id")
    return found
