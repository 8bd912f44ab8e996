"""A conversation's visible branch as Markdown: what the UI shows, for reading or pasting.

The visible branch is the UI's: from the root, the newest child at every fork. Each message
is a heading naming who wrote it (an external sender by its source and number), then its
text; tool calls and results are fenced JSON, images links.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from relaychat.resources import iso
from relaychat.statuses import MessageRole, MessageStatus

_WHO = {
    MessageRole.USER: "User",
    MessageRole.ASSISTANT: "Assistant",
    MessageRole.EXTERNAL: "External",
    MessageRole.TOOL: "Tool",
}


def visible_branch(messages: Sequence[Any]) -> list[Any]:
    """The messages (oldest first in, root first out) on the branch the UI shows."""
    newest_child: dict[str | None, Any] = {}
    for message in messages:  # oldest first: a later sibling replaces an earlier one
        newest_child[message.parent_message_id] = message
    branch: list[Any] = []
    seen: set[str] = set()
    at = newest_child.get(None)
    while at is not None and at.id not in seen:
        seen.add(at.id)
        branch.append(at)
        at = newest_child.get(at.id)
    return branch


def _heading(message: Any) -> str:
    who = _WHO.get(message.role, str(message.role))
    meta = message.metadata or {}
    details = []
    if message.role == MessageRole.EXTERNAL:
        details += [str(v) for v in (meta.get("source"), meta.get("phoneNumber")) if v]
    if message.sender and message.role != MessageRole.USER and message.sender not in details:
        details.append(message.sender)
    if message.model:
        details.append(message.model)
    if message.status != MessageStatus.COMPLETE:
        details.append(str(message.status))
    label = f"{who} ({', '.join(details)})" if details else who
    return f"### {label} · {iso(message.created_at)}"


def _fenced(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    # A fence longer than any run of backticks inside, so the content cannot close it.
    longest = max((len(run) for run in text.split("\n") if set(run) == {"`"}), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def _body(message: Any) -> str:
    blocks: list[str] = []
    for part in message.content or []:
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            blocks.append(str(part["text"]))
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            blocks.append(f"![image](<{url}>)" if not url.startswith("data:") else "*(image)*")
        elif kind == "tool_call":
            blocks.append(f"Tool call `{part.get('name')}`:\n\n{_fenced(part.get('arguments'))}")
        elif kind == "tool_result":
            blocks.append(f"Tool result:\n\n{_fenced(part.get('content'))}")
    if message.status == MessageStatus.ERROR and message.error:
        blocks.append(f"> Error: {message.error}")
    return "\n\n".join(blocks) or "*(no text)*"


def branch_markdown(conversation: Any, messages: Sequence[Any]) -> str:
    """The document: a title, the conversation's model, then each message of the branch."""
    lines = [f"# {conversation.title or 'Untitled conversation'}", ""]
    about = [f"Conversation `{conversation.id}`"]
    if conversation.model:
        about.append(f"model {conversation.endpoint or ''}/{conversation.model}".replace(" /", " "))
    about.append(f"started {iso(conversation.created_at)}")
    lines += [", ".join(about), ""]
    for message in visible_branch(messages):
        lines += [_heading(message), "", _body(message), ""]
    return "\n".join(lines)
