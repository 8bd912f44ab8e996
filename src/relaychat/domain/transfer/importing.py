"""Import: each conversation of a recognised file written whole, or refused with a reason.

Every conversation is read, checked and written in a transaction of its own, so a bad one
leaves nothing behind and does not stop the others. Nothing is overwritten: a conversation
or message id that is taken (by anyone: ids are global), reserved for a phone number's
thread, or not one relaychat could hold, is replaced by a new one, and the report says so.
Imported rows are indexed for search by the triggers that index every message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.agent.agents import AgentNotFound, get_visible_agent
from relaychat.domain.ids import new_id
from relaychat.domain.messaging import conversation_ids
from relaychat.domain.messaging.conversations import publish_created
from relaychat.domain.transfer.drafts import (
    ConversationInvalid,
    DraftConversation,
    DraftMessage,
    check_draft,
)
from relaychat.domain.transfer.formats import ImportFile, source_id
from relaychat.errors import AppError, ConversationExists, ErrorCode
from relaychat.realtime.bus import EventBus
from relaychat.statuses import MessageStatus
from relaychat.storage.models import ApiKey, Conversation, Message, User
from relaychat.storage.tables import MESSAGES

# A message id we keep as it came: what our own ids (UUIDs) and other apps' look like.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,35}")
# Ids looked up per statement: well under every driver's bound-parameter limit.
_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class Imported:
    """A conversation written: its id here, and the id it had in the file if that differs."""

    conversation_id: str
    source_id: str | None
    title: str | None
    messages: int
    renamed: bool


@dataclass(frozen=True)
class Refused:
    """A conversation left out, with the code and words of the reason."""

    index: int
    source_id: str | None
    title: str | None
    code: ErrorCode
    detail: str
    field: str | None


@dataclass
class ImportReport:
    format: str
    imported: list[Imported] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


async def import_file(
    session: AsyncSession, bus: EventBus, user: User, upload: ImportFile, *, max_messages: int
) -> ImportReport:
    """Import every conversation of `upload` for `user`, each whole or not at all."""
    report = ImportReport(format=upload.format)
    for index, item in enumerate(upload.items):
        draft: DraftConversation | None = None
        try:
            draft = upload.reader(item)
            report.imported.append(await _write(session, bus, user, draft, max_messages))
        except AppError as exc:
            await session.rollback()
            # A rollback expires every loaded row; the next conversation reads the user's
            # role (whose agents it may use), which must not be a lazy load in async code.
            await session.refresh(user)
            title = draft.title if draft else None
            field_name = exc.fields.get("field")
            report.refused.append(
                Refused(
                    index=index,
                    source_id=draft.id if draft else source_id(item),
                    title=title,
                    code=exc.code,
                    detail=exc.detail,
                    field=field_name if isinstance(field_name, str) else None,
                )
            )
    return report


async def _conversation_id(session: AsyncSession, user: User, wanted: str | None) -> str:
    """`wanted` when relaychat can hold it for this user and nobody has it; else a new id."""
    if wanted is None:
        return new_id()
    try:
        conversation_ids.check_id(wanted)
        await conversation_ids.check_claim(session, wanted, user.id)
    except AppError:
        return new_id()
    taken = await session.scalar(select(Conversation.id).where(Conversation.id == wanted))
    return new_id() if taken else wanted


async def _message_ids(session: AsyncSession, messages: list[DraftMessage]) -> dict[str, str]:
    """For each file id, the id its message gets here: the same unless taken or unusable."""
    wanted = [m.id for m in messages if m.id is not None and _MESSAGE_ID.fullmatch(m.id)]
    taken: set[str] = set()
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        chunk = wanted[start : start + _LOOKUP_CHUNK]
        taken.update(await session.scalars(select(Message.id).where(Message.id.in_(chunk))))
    usable = set(wanted) - taken
    return {m.id: (m.id if m.id in usable else new_id()) for m in messages if m.id is not None}


async def _own_keys(session: AsyncSession, user: User, messages: list[DraftMessage]) -> set[str]:
    """Which of the messages' API key ids name a key of this user's (provenance kept)."""
    named = {m.api_key_id for m in messages if m.api_key_id}
    if not named:
        return set()
    query = select(ApiKey.id).where(ApiKey.user_id == user.id, ApiKey.id.in_(named))
    return set(await session.scalars(query))


async def _agent_id(session: AsyncSession, user: User, agent_id: str | None) -> str | None:
    """The agent when this user may use it; otherwise none (never someone's private one)."""
    if agent_id is None:
        return None
    try:
        await get_visible_agent(session, user, agent_id)
    except AgentNotFound:
        return None
    return agent_id


async def _write(
    session: AsyncSession, bus: EventBus, user: User, draft: DraftConversation, max_messages: int
) -> Imported:
    ordered = check_draft(draft, max_messages)
    cid = await _conversation_id(session, user, draft.id)
    ids = await _message_ids(session, ordered)
    own_keys = await _own_keys(session, user, ordered)
    conversation = Conversation(
        id=cid,
        user_id=user.id,
        title=draft.title,
        endpoint=draft.endpoint,
        model=draft.model,
        agent_id=await _agent_id(session, user, draft.agent_id),
        model_parameters=draft.model_parameters,
        system_prompt=draft.system_prompt,
        archived=draft.archived,
        unseen_external=0,
        created_at=draft.created_at,
        updated_at=draft.updated_at,
    )
    session.add(conversation)
    rows = [_row(cid, m, ids, own_keys) for m in ordered]
    try:
        await session.flush()
        if rows:
            await session.execute(insert(MESSAGES), rows)
        publish_created(session, bus, conversation)
        await session.commit()
    except IntegrityError as exc:
        # Another writer took an id between the check and the write: nothing was kept.
        await session.rollback()
        raise ImportRace() from exc
    except DataError as exc:
        # A value the checks let through and the database does not take: nothing was kept.
        await session.rollback()
        raise ConversationInvalid(
            f"the database refused a value: {type(exc.orig).__name__}"
        ) from exc
    return Imported(
        conversation_id=cid,
        source_id=draft.id,
        title=draft.title,
        messages=len(rows),
        renamed=draft.id is not None and cid != draft.id,
    )


def _row(
    conversation_id: str, message: DraftMessage, ids: dict[str, str], own_keys: set[str]
) -> dict[str, Any]:
    new = ids[message.id] if message.id is not None else new_id()
    status = message.status
    if status == MessageStatus.STREAMING:
        # No generation writes it any more: it stays as far as it got, as an interrupted one.
        status = MessageStatus.UNFINISHED
    return {
        "id": new,
        "conversation_id": conversation_id,
        "parent_message_id": ids[message.parent_id] if message.parent_id else None,
        "role": message.role,
        "sender": message.sender,
        "content": message.content,
        "text": message.text,
        "endpoint": message.endpoint,
        "model": message.model,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "tokens_estimated": message.tokens_estimated,
        "finish_reason": message.finish_reason,
        "status": status,
        "error": message.error,
        "metadata": message.metadata,
        "api_key_id": _provenance(message.api_key_id, own_keys),
        "created_at": message.created_at,
        "updated_at": message.updated_at or message.created_at,
    }


def _provenance(api_key_id: str | None, own_keys: set[str]) -> str | None:
    """The key a message came with, as far as it is the importer's to claim: one of their
    keys, or a system key from the environment (`env:…`, a label of no one's row); another
    person's key (or one of another instance) is not named."""
    if api_key_id is None:
        return None
    return api_key_id if api_key_id.startswith("env:") or api_key_id in own_keys else None


class ImportRace(ConversationExists):
    title = "An id was taken while the conversation was being imported; import it again"
