"""Writing a reply's usage row, in the transaction that ends the reply."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.usage.counting import TokenCount
from relaychat.storage.tables import REPLY_USAGE

# Built once: every reply that cost anything ends with it.
_RECORD = insert(REPLY_USAGE)


async def record_usage(
    session: AsyncSession,
    *,
    message_id: str,
    generation_id: str,
    user_id: str,
    conversation_id: str,
    endpoint: str,
    model: str,
    agent_id: str | None,
    api_key_id: str | None,
    tokens: TokenCount,
    at: datetime,
) -> None:
    """Stage the reply's usage row; the caller commits it with the reply."""
    await session.execute(
        _RECORD,
        {
            "message_id": message_id,
            "generation_id": generation_id,
            "user_id": user_id,
            "conversation_id": conversation_id,
            "endpoint": endpoint,
            "model": model,
            "agent_id": agent_id,
            "api_key_id": api_key_id,
            "prompt_tokens": tokens.prompt_tokens,
            "completion_tokens": tokens.completion_tokens,
            "total_tokens": tokens.total_tokens,
            "estimated": tokens.estimated,
            "created_at": at,
        },
    )
