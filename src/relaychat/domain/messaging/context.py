"""What a model sees: the branch from the root to a message, turned into a ChatRequest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import bindparam, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.llm.types import ChatMessage, ChatRequest, Role
from relaychat.statuses import MessageRole, MessageStatus
from relaychat.storage.tables import MESSAGES

# Stored roles and how a model is told about them; system rows are not replayed here.
_ROLE_FOR_MODEL: dict[str, Role] = {
    MessageRole.USER: "user",
    MessageRole.EXTERNAL: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.TOOL: "tool",
}
_REPLAYED_PARTS = frozenset({"text", "image_url"})
# Generation parameters a conversation may carry in model_parameters, by request field.
_PARAMETERS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
    "stop": "stop",
}


class Turn(Protocol):
    """What replaying a stored message reads of it (a row of `branch`, or the entity)."""

    @property
    def role(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def sender(self) -> str | None: ...
    @property
    def content(self) -> list[dict[str, Any]]: ...
    @property
    def meta(self) -> dict[str, Any] | None: ...
    @property
    def api_key_id(self) -> str | None: ...


_ancestors = (
    select(MESSAGES.c.id, MESSAGES.c.parent_message_id, literal(0).label("depth"))
    .where(MESSAGES.c.id == bindparam("leaf_id"))
    .cte("ancestors", recursive=True)
)
_ancestors = _ancestors.union_all(
    select(MESSAGES.c.id, MESSAGES.c.parent_message_id, _ancestors.c.depth + 1).join(
        _ancestors, MESSAGES.c.id == _ancestors.c.parent_message_id
    )
)
# Built once, and only the columns a model's request needs, as plain rows: this runs for
# every reply, over a history that may be long.
_BRANCH = (
    select(
        MESSAGES.c.role,
        MESSAGES.c.status,
        MESSAGES.c.sender,
        MESSAGES.c.content,
        MESSAGES.c.metadata.label("meta"),
        MESSAGES.c.api_key_id,
    )
    .join(_ancestors, MESSAGES.c.id == _ancestors.c.id)
    .order_by(_ancestors.c.depth.desc())
)


async def branch(session: AsyncSession, leaf_id: str) -> Sequence[Turn]:
    """The messages from the root of the tree down to `leaf_id`, oldest first."""
    rows: Sequence[Turn] = (await session.execute(_BRANCH, {"leaf_id": leaf_id})).all()
    return rows


def to_chat_message(message: Turn) -> ChatMessage | None:
    """The model's view of a stored message, or None when it carries nothing to replay."""
    role = _ROLE_FOR_MODEL.get(message.role)
    if role is None or message.status == MessageStatus.ERROR:
        return None
    if role == "tool":  # results of tool calls a caller ran (the OpenAI-compatible API)
        results = [
            {k: part[k] for k in ("type", "tool_call_id", "content", "is_error") if k in part}
            for part in message.content
            if part.get("type") == "tool_result"
        ]
        return ChatMessage.model_validate({"role": role, "content": results}) if results else None
    parts: list[dict[str, Any]] = [
        part for part in message.content if part.get("type") in _REPLAYED_PARTS
    ]
    if role == "assistant" and not any(p.get("type") == "tool_result" for p in message.content):
        # Calls the caller was left to run; an agent's own calls come with their results
        # in the same message and are not replayed (the model saw them in its loop).
        parts += [
            {
                "type": "tool_call",
                "id": part["id"],
                "name": part["name"],
                "arguments": part["arguments"] if isinstance(part["arguments"], dict) else {},
            }
            for part in message.content
            if part.get("type") == "tool_call"
        ]
    if message.role == MessageRole.EXTERNAL:
        # External senders are labelled so the model knows who is speaking.
        source = (message.meta or {}).get("source") or message.sender or "external"
        parts = [{"type": "text", "text": f"[message from {source}]"}, *parts]
    if not any(p.get("type") != "text" or p.get("text") for p in parts):
        return None
    return ChatMessage.model_validate({"role": role, "content": parts})


def generation_options(parameters: dict[str, Any]) -> dict[str, Any]:
    """The ChatRequest fields found in a conversation's model_parameters."""
    options: dict[str, Any] = {}
    for key, field in _PARAMETERS.items():
        if parameters.get(key) is not None:
            options[field] = parameters[key]
    if isinstance(options.get("stop"), str):
        options["stop"] = [options["stop"]]
    return options


def build_request(
    history: Sequence[Turn], *, model: str, system: str | None, parameters: dict[str, Any]
) -> ChatRequest:
    """A request for `model` with a system prompt and generation parameters."""
    messages = [m for m in (to_chat_message(row) for row in history) if m is not None]
    return ChatRequest(
        model=model, system=system, messages=messages, **generation_options(parameters)
    )
