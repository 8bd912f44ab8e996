"""Export: one conversation as our JSON document or as Markdown, or all of a person's as
one JSON file written a conversation at a time (never the whole file in memory)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.transfer import own_format
from relaychat.domain.transfer.branch_markdown import branch_markdown
from relaychat.resources import iso
from relaychat.storage.models import Conversation
from relaychat.storage.tables import CONVERSATIONS, MESSAGES
from relaychat.storage.types import utcnow

# Conversations read per query while streaming an export: rows, not entities, so memory
# holds a page of ids and one conversation's messages at a time.
_PAGE = 100


async def _messages(session: AsyncSession, conversation_id: str) -> Sequence[Row[Any]]:
    query = (
        select(MESSAGES)
        .where(MESSAGES.c.conversation_id == conversation_id)
        .order_by(MESSAGES.c.created_at, MESSAGES.c.id)
    )
    return (await session.execute(query)).all()


async def conversation_document(
    session: AsyncSession, conversation: Conversation
) -> own_format.ConversationDocument:
    """The whole conversation (every branch, metadata, tool steps) as our JSON document."""
    messages = await _messages(session, conversation.id)
    return own_format.document(conversation, list(messages), utcnow())


async def conversation_markdown(session: AsyncSession, conversation: Conversation) -> str:
    """The branch the UI shows (the newest reply at every fork) as Markdown."""
    messages = await _messages(session, conversation.id)
    return branch_markdown(conversation, messages)


async def count_conversations(session: AsyncSession, user_id: str) -> int:
    """How many conversations an export of the user's holds (archived ones too)."""
    query = (
        select(func.count()).select_from(CONVERSATIONS).where(CONVERSATIONS.c.user_id == user_id)
    )
    return int(await session.scalar(query) or 0)


async def export_all(
    session: AsyncSession, user_id: str, on_conversation: Callable[[], None] | None = None
) -> AsyncIterator[bytes]:
    """Every conversation of the user, oldest first, as one `relaychat.export` JSON file,
    in chunks of one conversation each; the caller writes them as they come.
    `on_conversation` is called after each conversation's chunk is taken (a progress bar)."""
    head = {
        "format": own_format.BULK_FORMAT,
        "version": own_format.VERSION,
        "exported_at": iso(utcnow()),
    }
    # The head object left open; the list it opens is closed after the last conversation.
    yield (json.dumps(head, separators=(",", ":"))[:-1] + ',"conversations":[\n').encode()
    after: tuple[Any, str] | None = None
    first = True
    while True:
        query = select(CONVERSATIONS).where(CONVERSATIONS.c.user_id == user_id)
        if after is not None:
            query = query.where(
                or_(
                    CONVERSATIONS.c.created_at > after[0],
                    and_(CONVERSATIONS.c.created_at == after[0], CONVERSATIONS.c.id > after[1]),
                )
            )
        page = (
            await session.execute(
                query.order_by(CONVERSATIONS.c.created_at, CONVERSATIONS.c.id).limit(_PAGE)
            )
        ).all()
        for conversation in page:
            messages = await _messages(session, conversation.id)
            document = own_format.document(conversation, list(messages), utcnow())
            chunk = document.model_dump_json().encode()
            yield chunk if first else b",\n" + chunk
            first = False
            if on_conversation is not None:
                on_conversation()
        # A read transaction per page: a long export holds no snapshot (or SQLite read
        # lock) for its whole run.
        await session.rollback()
        if len(page) < _PAGE:
            break
        after = (page[-1].created_at, page[-1].id)
    yield b"\n]}\n"
