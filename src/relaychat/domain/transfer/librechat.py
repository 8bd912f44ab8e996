"""LibreChat's conversation export (the JSON of "Export conversation"): `conversationId`,
`title`, `endpoint`, `options` (the model and its parameters), and the messages either as
a list (`messages`, flat or, when exported recursively, each with `children`) or as the
older `messagesTree`. Each message has `messageId`, `parentMessageId` (all zeros at the
root), `sender`, `isCreatedByUser`, `text` (or `content` parts), `error`, `unfinished`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from relaychat.domain.transfer.drafts import (
    ConversationInvalid,
    DraftConversation,
    DraftMessage,
    utc,
)
from relaychat.statuses import MessageRole, MessageStatus
from relaychat.storage.types import utcnow

SOURCE = "librechat"
# LibreChat's parent of a conversation's first message.
NO_PARENT = "00000000-0000-0000-0000-000000000000"
# Options that are generation parameters here too (domain/messaging/context.py reads them).
_PARAMETERS = ("temperature", "top_p", "max_tokens", "stop")


def is_export(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and "conversationId" in item
        and ("messages" in item or "messagesTree" in item)
    )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _flatten(messages: Any) -> list[dict[str, Any]]:
    """Every message of a list, including those nested under `children` (a recursive export)."""
    found: list[dict[str, Any]] = []
    stack = [messages]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            found.append(node)
            if node.get("children"):
                stack.append(node["children"])
        else:
            raise ConversationInvalid("a message is not an object", field="messages")
    return found


def _text(message: dict[str, Any]) -> str:
    if isinstance(message.get("text"), str) and message["text"]:
        return str(message["text"])
    texts = []
    for part in message.get("content") or []:
        if isinstance(part, dict) and part.get("type") == "text":
            value = part.get("text")
            value = value.get("value") if isinstance(value, dict) else value
            if isinstance(value, str) and value:
                texts.append(value)
    return "\n\n".join(texts)


def _bounded(value: Any, length: int) -> str | None:
    return value[:length] if isinstance(value, str) and value else None


def read(item: Any) -> DraftConversation:
    """A draft of one LibreChat conversation; ConversationInvalid when it is not one."""
    if not is_export(item):
        raise ConversationInvalid(
            "a LibreChat export has `conversationId` and `messages`", field="messages"
        )
    rows = _flatten(item.get("messages") or item.get("messagesTree") or [])
    ids = {m.get("messageId") for m in rows}
    options = item.get("options") if isinstance(item.get("options"), dict) else {}
    endpoint = _bounded(item.get("endpoint") or options.get("endpoint"), 100)
    model = _bounded(options.get("model"), 200)
    messages: list[DraftMessage] = []
    for index, row in enumerate(rows):
        message_id = row.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            raise ConversationInvalid(
                "a message has no `messageId`", field=f"messages[{index}].messageId"
            )
        parent = row.get("parentMessageId")
        text = _text(row)
        status = MessageStatus.COMPLETE
        if row.get("error"):
            status = MessageStatus.ERROR
        elif row.get("unfinished"):
            status = MessageStatus.UNFINISHED
        created = _time(row.get("createdAt")) or utcnow()
        messages.append(
            DraftMessage(
                id=message_id,
                # A parent the export left out (a branch not exported) makes a root.
                parent_id=parent if parent != NO_PARENT and parent in ids else None,
                role=MessageRole.USER if row.get("isCreatedByUser") else MessageRole.ASSISTANT,
                sender=_bounded(row.get("sender"), 200),
                content=[{"type": "text", "text": text}] if text else [],
                text=text,
                status=status,
                error=text if status == MessageStatus.ERROR else None,
                endpoint=_bounded(row.get("endpoint"), 100) or endpoint,
                model=_bounded(row.get("model"), 200),
                created_at=created,
                updated_at=_time(row.get("updatedAt")),
                metadata={"imported_from": SOURCE},
            )
        )
    times = [m.created_at for m in messages]
    created = min(times) if times else utcnow()
    title = item.get("title")
    conversation_id = item.get("conversationId")
    prompt = options.get("promptPrefix")
    return DraftConversation(
        id=conversation_id if isinstance(conversation_id, str) else None,
        title=title[:500] if isinstance(title, str) and title else None,
        created_at=created,
        updated_at=max(times) if times else created,
        endpoint=endpoint,
        model=model,
        model_parameters={k: options[k] for k in _PARAMETERS if options.get(k) is not None},
        system_prompt=prompt if isinstance(prompt, str) and prompt else None,
        messages=messages,
    )
