"""A conversation on its way in: what every format's reader produces, checked before any write.

Readers (own_format, librechat, chatgpt) turn their file's conversation into a
`DraftConversation`; `check_draft` refuses, naming the field, what could not be stored as it
is (a broken tree, text a database would refuse, a value longer than its column), so an
import writes a whole conversation or nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from relaychat.domain.limits import find_unstorable, metadata_problem
from relaychat.errors import ErrorCode, Unprocessable
from relaychat.statuses import MessageRole, MessageStatus

# Column widths (storage/models.py): SQLite would keep a longer value that PostgreSQL refuses.
_CONVERSATION_LENGTHS = {"title": 500, "endpoint": 100, "model": 200, "agent_id": 64}
_MESSAGE_LENGTHS = {"sender": 200, "endpoint": 100, "model": 200, "finish_reason": 32}
# Deeper than this a reader is not looking at a conversation (model parameters, parts).
_MAX_DEPTH = 32
# The token columns are 32-bit integers on PostgreSQL.
_MAX_TOKENS = 2**31 - 1


class ConversationInvalid(Unprocessable):
    code = ErrorCode.IMPORT_CONVERSATION_INVALID
    title = "This conversation cannot be imported as it is"


@dataclass
class DraftMessage:
    """One message as its file gave it; `id`/`parent_id` are the file's, not yet ours."""

    id: str | None
    parent_id: str | None
    role: MessageRole
    content: list[dict[str, Any]]
    text: str
    created_at: datetime
    sender: str | None = None
    status: MessageStatus = MessageStatus.COMPLETE
    error: str | None = None
    endpoint: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_estimated: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    api_key_id: str | None = None
    updated_at: datetime | None = None


@dataclass
class DraftConversation:
    """One conversation as its file gave it, its messages in any order."""

    id: str | None
    title: str | None
    created_at: datetime
    updated_at: datetime
    messages: list[DraftMessage]
    endpoint: str | None = None
    model: str | None = None
    agent_id: str | None = None
    model_parameters: dict[str, Any] = field(default_factory=dict)
    system_prompt: str | None = None
    archived: bool = False


def utc(moment: datetime) -> datetime:
    """`moment` in UTC; a time written without a zone is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parents_first(messages: list[DraftMessage]) -> list[DraftMessage]:
    """The messages ordered so each comes after its parent (siblings by creation time);
    ConversationInvalid for a repeated id, a parent not in the conversation, or a cycle."""
    by_id: dict[str, DraftMessage] = {}
    for index, message in enumerate(messages):
        if message.id is None:
            continue
        if message.id in by_id:
            raise ConversationInvalid(
                f"two messages have the id {message.id!r}", field=f"messages[{index}].id"
            )
        by_id[message.id] = message
    children: dict[str | None, list[DraftMessage]] = {}
    for index, message in enumerate(messages):
        if message.parent_id is not None and message.parent_id not in by_id:
            raise ConversationInvalid(
                f"message {message.id!r} answers {message.parent_id!r}, "
                "which is not in the conversation",
                field=f"messages[{index}].parent_message_id",
            )
        children.setdefault(message.parent_id, []).append(message)
    ordered: list[DraftMessage] = []
    # Iterative: a long conversation is a deep tree, deeper than Python's recursion limit.
    stack = sorted(children.get(None, []), key=_by_time, reverse=True)
    while stack:
        message = stack.pop()
        ordered.append(message)
        if message.id is not None:
            stack.extend(sorted(children.get(message.id, []), key=_by_time, reverse=True))
    if len(ordered) != len(messages):
        raise ConversationInvalid(
            "the messages' parents form a cycle: some have no root", field="messages"
        )
    return ordered


def _by_time(message: DraftMessage) -> tuple[datetime, str]:
    # Pushed newest first, so the oldest sibling (and its subtree) is written first.
    return (message.created_at, message.id or "")


def check_draft(draft: DraftConversation, max_messages: int) -> list[DraftMessage]:
    """Refuse what cannot be stored as it is; the messages, parents first, when all can."""
    if len(draft.messages) > max_messages:
        raise TooManyMessages(
            f"the conversation has {len(draft.messages)} messages; "
            f"an import takes at most {max_messages} per conversation",
            limit=max_messages,
        )
    _check_values(
        "",
        {k: getattr(draft, k) for k in _CONVERSATION_LENGTHS},
        _CONVERSATION_LENGTHS,
        {"model_parameters": draft.model_parameters, "system_prompt": draft.system_prompt},
    )
    for index, message in enumerate(draft.messages):
        where = f"messages[{index}]."
        _check_values(
            where,
            {k: getattr(message, k) for k in _MESSAGE_LENGTHS},
            _MESSAGE_LENGTHS,
            {"content": message.content, "text": message.text, "error": message.error},
        )
        for name in ("prompt_tokens", "completion_tokens"):
            count = getattr(message, name)
            if count is not None and not 0 <= count <= _MAX_TOKENS:
                raise ConversationInvalid(
                    f"{name} is not a token count (0 to {_MAX_TOKENS})", field=where + name
                )
        refusal = metadata_problem(message.metadata)
        if refusal is not None:
            raise ConversationInvalid(f"{refusal.reason}", field=where + refusal.field)
    return parents_first(draft.messages)


def _check_values(
    where: str, bounded: dict[str, str | None], lengths: dict[str, int], free: dict[str, Any]
) -> None:
    for name, value in bounded.items():
        if value is not None and len(value) > lengths[name]:
            raise ConversationInvalid(
                f"{where}{name} is longer than {lengths[name]} characters", field=where + name
            )
    refusal = find_unstorable({**bounded, **free}, max_depth=_MAX_DEPTH)
    if refusal is not None:
        raise ConversationInvalid(refusal.reason, field=where + refusal.field)


class TooManyMessages(Unprocessable):
    code = ErrorCode.IMPORT_TOO_MANY_MESSAGES
    title = "This conversation has more messages than an import takes"
