"""Typed events sent to a user's browsers; each one is a flat JSON object with a `type`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from relaychat.resources import ConversationOut, MessageView


class BaseEvent(BaseModel):
    """Base of every event; subclasses fix `type` with a Literal default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    conversation_id: str | None = None


class ConversationEvent(BaseEvent):
    """An event about one conversation, so per-conversation streams can filter on it."""

    conversation_id: str


class MessageCreated(ConversationEvent):
    """A message was stored; `message` is the message as the REST API renders it."""

    type: Literal["message.created"] = "message.created"
    message_id: str
    message: MessageView


class MessageDelta(ConversationEvent):
    """A chunk of text streamed into a message being generated."""

    type: Literal["message.delta"] = "message.delta"
    message_id: str
    delta: str


class MessageCompleted(ConversationEvent):
    """A generated message is final; `message` is its complete rendering."""

    type: Literal["message.completed"] = "message.completed"
    message_id: str
    message: MessageView


class MessageFailed(ConversationEvent):
    """A generation ended in error; `error` is a stable code, `detail` is for people."""

    type: Literal["message.failed"] = "message.failed"
    message_id: str
    error: str
    detail: str | None = None


class MessageToolCall(ConversationEvent):
    """A model asked for a tool; the payload's shape belongs to the agent runtime."""

    type: Literal["message.tool_call"] = "message.tool_call"
    message_id: str
    tool_call: dict[str, Any]


class MessageToolResult(ConversationEvent):
    """A tool answered; the payload's shape belongs to the agent runtime."""

    type: Literal["message.tool_result"] = "message.tool_result"
    message_id: str
    tool_result: dict[str, Any]


class MessageMcpUnavailable(ConversationEvent):
    """Some of the agent's MCP servers (or single tools of them) could not be used: the
    reply goes on without those tools. `mcp_unavailable` is `[{server, error, reason,
    tools?}]`, as in the reply's metadata; `tools` lists the tools left out when the agent
    named them one by one."""

    type: Literal["message.mcp_unavailable"] = "message.mcp_unavailable"
    message_id: str
    mcp_unavailable: list[dict[str, Any]]


class ConversationCreated(ConversationEvent):
    """A conversation was created; `conversation` is its REST rendering."""

    type: Literal["conversation.created"] = "conversation.created"
    conversation: ConversationOut


class ConversationUpdated(ConversationEvent):
    """A conversation changed; `conversation` is its new REST rendering."""

    type: Literal["conversation.updated"] = "conversation.updated"
    conversation: ConversationOut


class ConversationDeleted(ConversationEvent):
    """A conversation was deleted."""

    type: Literal["conversation.deleted"] = "conversation.deleted"


class GenerationStarted(ConversationEvent):
    """A model or agent started writing `message_id`."""

    type: Literal["generation.started"] = "generation.started"
    generation_id: str
    message_id: str


class GenerationAborted(ConversationEvent):
    """A generation was stopped before it finished."""

    type: Literal["generation.aborted"] = "generation.aborted"
    generation_id: str
    message_id: str
    reason: str | None = None


class Reset(BaseEvent):
    """The missed events are no longer in the log: the client should reload its state."""

    type: Literal["reset"] = "reset"
    reason: str


Event = Annotated[
    MessageCreated
    | MessageDelta
    | MessageCompleted
    | MessageFailed
    | MessageToolCall
    | MessageToolResult
    | MessageMcpUnavailable
    | ConversationCreated
    | ConversationUpdated
    | ConversationDeleted
    | GenerationStarted
    | GenerationAborted
    | Reset,
    Field(discriminator="type"),
]

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_TYPES: frozenset[str] = frozenset(_event_adapter.json_schema()["discriminator"]["mapping"])


def parse_event(raw: str | bytes) -> Event:
    """The event encoded in `raw` (the `data:` of an SSE frame)."""
    return _event_adapter.validate_json(raw)
