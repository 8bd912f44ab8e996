"""ChatGPT's data export (`conversations.json`): a list of conversations, each a `mapping`
of nodes `{id, message, parent, children}` whose messages carry `author.role`,
`content.content_type` and `parts`.

What a person saw is kept: user, assistant and tool messages with something to show. The
root, system prompts and messages ChatGPT hides (`is_visually_hidden_from_conversation`)
are left out, their children hung on the nearest kept ancestor. Parts that are files
(image asset pointers) are not in the export, so they are counted in the message's
metadata (`omitted_parts`) instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from relaychat.domain.transfer.drafts import (
    ConversationInvalid,
    DraftConversation,
    DraftMessage,
)
from relaychat.statuses import MessageRole, MessageStatus
from relaychat.storage.types import utcnow

SOURCE = "chatgpt"
_ROLES = {"user": MessageRole.USER, "assistant": MessageRole.ASSISTANT, "tool": MessageRole.TOOL}
# ChatGPT's finish_details.type, as the finish reasons our adapters record.
_FINISH = {"stop": "stop", "max_tokens": "length", "interrupted": "interrupted"}


def is_export(items: Any) -> bool:
    return (
        isinstance(items, list)
        and bool(items)
        and all(isinstance(item, dict) and "mapping" in item for item in items)
    )


def _time(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _text_of(content: dict[str, Any]) -> tuple[str, int]:
    """The text a content block shows, and how many of its parts were files left out."""
    kind = content.get("content_type")
    if kind == "code":
        language = content.get("language") or ""
        if language == "unknown":
            language = ""
        return f"```{language}\n{content.get('text') or ''}\n```", 0
    if isinstance(content.get("text"), str) and not content.get("parts"):
        return content["text"], 0
    texts: list[str] = []
    omitted = 0
    for part in content.get("parts") or []:
        if isinstance(part, str):
            if part:
                texts.append(part)
        else:
            omitted += 1
    return "\n\n".join(texts), omitted


def read(item: Any) -> DraftConversation:
    """A draft of one ChatGPT conversation; ConversationInvalid when it is not one."""
    if not isinstance(item, dict) or not isinstance(item.get("mapping"), dict):
        raise ConversationInvalid("a ChatGPT conversation has a `mapping` object", field="mapping")
    mapping: dict[str, Any] = item["mapping"]
    created = _time(item.get("create_time")) or utcnow()
    updated = _time(item.get("update_time")) or created
    kept: dict[str, DraftMessage] = {}
    for node_id, node in mapping.items():
        message = _message(node_id, node, created)
        if message is not None:
            kept[node_id] = message
    for node_id, message in kept.items():
        message.parent_id = _kept_ancestor(mapping, node_id, kept)
    title = item.get("title")
    conversation_id = item.get("conversation_id") or item.get("id")
    return DraftConversation(
        id=conversation_id if isinstance(conversation_id, str) else None,
        title=title[:500] if isinstance(title, str) and title else None,
        created_at=created,
        updated_at=updated,
        archived=item.get("is_archived") is True,
        messages=list(kept.values()),
    )


def _object(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (a field of an unexpected shape)."""
    return value if isinstance(value, dict) else {}


def _message(node_id: str, node: Any, fallback: datetime) -> DraftMessage | None:
    """Our message for a node, or None for one a person did not see."""
    if not isinstance(node, dict) or not isinstance(node.get("message"), dict):
        return None
    message: dict[str, Any] = node["message"]
    author = _object(message.get("author"))
    role = _ROLES.get(str(author.get("role")))
    meta = _object(message.get("metadata"))
    if role is None or meta.get("is_visually_hidden_from_conversation"):
        return None
    content = _object(message.get("content"))
    text, omitted = _text_of(content)
    if not text and not omitted:
        return None
    finish = meta.get("finish_details") or {}
    finish_type = finish.get("type") if isinstance(finish, dict) else None
    status = MessageStatus.COMPLETE
    if message.get("status") == "in_progress" or finish_type == "interrupted":
        status = MessageStatus.UNFINISHED
    metadata: dict[str, Any] = {"imported_from": SOURCE}
    if omitted:
        metadata["omitted_parts"] = omitted
    model = meta.get("model_slug")
    name = author.get("name")
    return DraftMessage(
        id=node_id,
        parent_id=None,
        role=role,
        # A tool's name (`browser`, `python`) says which step it was.
        sender=name[:200] if isinstance(name, str) and name else None,
        content=[{"type": "text", "text": text}] if text else [],
        text=text,
        created_at=_time(message.get("create_time")) or fallback,
        status=status,
        model=model[:200] if isinstance(model, str) and model else None,
        finish_reason=_FINISH.get(finish_type) if isinstance(finish_type, str) else None,
        metadata=metadata,
    )


def _kept_ancestor(
    mapping: dict[str, Any], node_id: str, kept: dict[str, DraftMessage]
) -> str | None:
    """The nearest ancestor of the node that is kept; None at the root (or a broken chain)."""
    seen = {node_id}
    parent = mapping[node_id].get("parent")
    while isinstance(parent, str) and parent not in seen:
        if parent in kept:
            return parent
        seen.add(parent)
        node = mapping.get(parent)
        parent = node.get("parent") if isinstance(node, dict) else None
    return None
