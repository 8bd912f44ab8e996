"""Channels (placeholder; being written)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.storage.models import Message


async def enqueue_reply(session: AsyncSession, request: Message, reply: Message) -> None:
    """Queue the reply to a message that came in through a channel."""
    return None
