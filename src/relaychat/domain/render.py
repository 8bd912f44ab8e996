"""Plain-dict renderings of stored rows: the same shape for REST answers and events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from relaychat.storage.models import Agent, Conversation, Generation, Message


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as the REST schemas render datetimes."""
    return moment.isoformat().replace("+00:00", "Z")


def message_dict(message: Message) -> dict[str, Any]:
    """A message as clients see it."""
    return {
        "message_id": message.id,
        "conversation_id": message.conversation_id,
        "parent_message_id": message.parent_message_id,
        "role": message.role,
        "sender": message.sender,
        "content": message.content,
        "text": message.text,
        "status": message.status,
        "error": message.error,
        "endpoint": message.endpoint,
        "model": message.model,
        "finish_reason": message.finish_reason,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "metadata": message.meta or {},
        # The key an external message came with: a key's id, or `env:…` for a system key.
        "api_key_id": message.api_key_id,
        "created_at": iso(message.created_at),
    }


def conversation_dict(conversation: Conversation) -> dict[str, Any]:
    """A conversation as clients see it."""
    return {
        "conversation_id": conversation.id,
        "title": conversation.title,
        "endpoint": conversation.endpoint,
        "model": conversation.model,
        "agent_id": conversation.agent_id,
        "model_parameters": conversation.model_parameters or {},
        "system_prompt": conversation.system_prompt,
        "archived": conversation.archived,
        "unseen_external": conversation.unseen_external or 0,
        "created_at": iso(conversation.created_at),
        "updated_at": iso(conversation.updated_at),
    }


def generation_dict(generation: Generation) -> dict[str, Any]:
    """A generation's state as clients see it (never the worker that runs it)."""
    return {
        "generation_id": generation.id,
        "conversation_id": generation.conversation_id,
        "response_message_id": generation.response_message_id,
        "endpoint": generation.endpoint,
        "model": generation.model,
        "status": generation.status,
        "finish_reason": generation.finish_reason,
        "error": generation.error,
        "started_at": iso(generation.started_at),
        "finished_at": iso(generation.finished_at) if generation.finished_at else None,
    }


def agent_dict(agent: Agent) -> dict[str, Any]:
    """An agent as clients see it."""
    return {
        "agent_id": agent.id,
        "owner_id": agent.user_id,
        "name": agent.name,
        "description": agent.description,
        "instructions": agent.instructions,
        "endpoint": agent.endpoint,
        "model": agent.model,
        "model_parameters": agent.model_parameters or {},
        "tools": list(agent.tools or []),
        "mcp_servers": list(agent.mcp_servers or []),
        "visibility": agent.visibility,
        "created_at": iso(agent.created_at),
        "updated_at": iso(agent.updated_at),
    }
