"""Which format an uploaded file is in, and its conversations, one item each.

The file is judged as a whole (422 `import_unreadable`, or `import_too_many_conversations`
before anything is written); each conversation is read later, on its own, so one that
cannot be read is refused alone while the others are imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relaychat.domain.transfer import chatgpt, librechat, own_format
from relaychat.domain.transfer.drafts import DraftConversation
from relaychat.errors import ErrorCode, Unprocessable

Reader = Callable[[Any], DraftConversation]


class ImportUnreadable(Unprocessable):
    code = ErrorCode.IMPORT_UNREADABLE
    title = "The file cannot be imported"


class TooManyConversations(Unprocessable):
    code = ErrorCode.IMPORT_TOO_MANY_CONVERSATIONS
    title = "The file holds more conversations than one import takes"


@dataclass(frozen=True)
class ImportFile:
    """A recognised file: its format's name, its conversations (unread), and their reader."""

    format: str
    items: list[Any]
    reader: Reader


def _formats(value: Any) -> tuple[str, list[Any], Reader] | None:
    if isinstance(value, dict):
        if value.get("format") == own_format.BULK_FORMAT:
            items = value.get("conversations")
            return ("relaychat", items, own_format.read) if isinstance(items, list) else None
        if own_format.is_document(value):
            return "relaychat", [value], own_format.read
        if librechat.is_export(value):
            return librechat.SOURCE, [value], librechat.read
        return None
    if not isinstance(value, list) or not value:
        return None
    if chatgpt.is_export(value):
        return chatgpt.SOURCE, value, chatgpt.read
    first = value[0]
    # A list of ours, or of LibreChat's: read by the first; an item of another shape is
    # refused on its own when it is read.
    if own_format.is_document(first):
        return "relaychat", value, own_format.read
    if librechat.is_export(first):
        return librechat.SOURCE, value, librechat.read
    return None


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    # Python reads NaN and Infinity, which JSON does not have and PostgreSQL's jsonb refuses.
    raise _NotJson(f"{name} is not a JSON value")


def recognise(data: bytes, max_conversations: int) -> ImportFile:
    """The file's format and conversations; ImportUnreadable or TooManyConversations."""
    try:
        # utf-8-sig: an editor's byte order mark is no reason to refuse a file.
        value = json.loads(data.decode("utf-8-sig"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise ImportUnreadable(f"the file is not UTF-8 (byte {exc.start})", field="file") from exc
    except json.JSONDecodeError as exc:
        raise ImportUnreadable(
            f"the file is not JSON: {exc.msg} at {exc.pos}", field="file"
        ) from exc
    except _NotJson as exc:
        raise ImportUnreadable(f"the file is not JSON: {exc}", field="file") from exc
    except RecursionError as exc:
        raise ImportUnreadable("the file's JSON is nested too deep", field="file") from exc
    found = _formats(value)
    if found is None:
        raise ImportUnreadable(
            "the file is in no format relaychat imports: relaychat's export, a LibreChat "
            "conversation export, or ChatGPT's conversations.json",
            field="file",
        )
    name, items, reader = found
    if len(items) > max_conversations:
        raise TooManyConversations(
            f"the file holds {len(items)} conversations; one import takes at most "
            f"{max_conversations}",
            field="file",
            limit=max_conversations,
        )
    return ImportFile(name, items, reader)


def source_id(item: Any) -> str | None:
    """The id a conversation had in its file, for the report, read without trusting it."""
    if not isinstance(item, dict):
        return None
    inner = item.get("conversation")
    for value in (
        inner.get("conversation_id") if isinstance(inner, dict) else None,
        item.get("conversationId"),
        item.get("conversation_id"),
        item.get("id"),
    ):
        if isinstance(value, str):
            return value[:200]
    return None
