"""relaychat's own agent tools: memory per user and agent, and messages to other conversations.

Each one acts only for the conversation's owner (`ToolContext.user_id`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.ids import new_id
from relaychat.llm.tools.base import Tool, ToolContext, ToolError
from relaychat.storage.models import AgentMemory
from relaychat.storage.types import utcnow

MAX_MEMORY_KEY = 200
MAX_MEMORY_VALUE = 4000
MAX_RECALLED = 50
# How many agent-to-agent hops one chain of send_message calls may take.
MAX_HOPS = 3

_REMEMBER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "key": {"type": "string", "description": "A short name for the fact."},
        "value": {"type": "string", "description": "What to remember."},
    },
    "required": ["key", "value"],
}
_RECALL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "key": {"type": "string", "description": "The fact to recall; omit to list all."}
    },
}
_SEND_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "conversation_id": {"type": "string", "description": "The conversation to post to."},
        "text": {"type": "string", "description": "The message."},
        "respond": {
            "type": "boolean",
            "description": "Ask that conversation's model or agent to answer there.",
        },
    },
    "required": ["conversation_id", "text"],
}


def _agent_of(context: ToolContext) -> str:
    if context.agent_id is None:
        raise ToolError("memory belongs to an agent; this conversation has none")
    return context.agent_id


class Remember(Tool):
    name = "remember"
    description = "Remember a fact about this user for later conversations (key and value)."
    parameters = _REMEMBER_PARAMETERS

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        agent_id = _agent_of(context)
        key = str(arguments.get("key") or "").strip()[:MAX_MEMORY_KEY]
        value = str(arguments.get("value") or "")
        if not key or not value:
            raise ToolError("both `key` and `value` are required")
        if len(value) > MAX_MEMORY_VALUE:
            raise ToolError(f"value longer than {MAX_MEMORY_VALUE} characters")
        for _ in range(2):  # a concurrent insert of the same key: retry as an update
            async with self.sessionmaker() as session:
                row = await session.scalar(_memory(context.user_id, agent_id, key))
                if row is None:
                    session.add(
                        AgentMemory(
                            id=new_id(),
                            user_id=context.user_id,
                            agent_id=agent_id,
                            key=key,
                            value=value,
                        )
                    )
                else:
                    row.value, row.updated_at = value, utcnow()
                try:
                    await session.commit()
                except IntegrityError:
                    continue
                return f"remembered {key!r}"
        raise ToolError("could not store the memory, try again")


class Recall(Tool):
    name = "recall"
    description = "Recall a fact remembered earlier about this user, or list them all."
    parameters = _RECALL_PARAMETERS

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        agent_id = _agent_of(context)
        key = str(arguments.get("key") or "").strip()
        async with self.sessionmaker() as session:
            if key:
                row = await session.scalar(_memory(context.user_id, agent_id, key))
                return row.value if row is not None else f"nothing remembered as {key!r}"
            rows = (
                await session.scalars(
                    select(AgentMemory)
                    .where(AgentMemory.user_id == context.user_id, AgentMemory.agent_id == agent_id)
                    .order_by(AgentMemory.updated_at.desc())
                    .limit(MAX_RECALLED)
                )
            ).all()
        if not rows:
            return "nothing remembered yet"
        return "\n".join(f"{row.key}: {row.value}" for row in rows)


def _memory(user_id: str, agent_id: str, key: str) -> Any:
    return select(AgentMemory).where(
        AgentMemory.user_id == user_id, AgentMemory.agent_id == agent_id, AgentMemory.key == key
    )


# (context, conversation_id, text, respond, hops) -> a line describing what happened
Sender = Callable[[ToolContext, str, str, bool], Awaitable[str]]


class SendMessage(Tool):
    name = "send_message"
    description = (
        "Post a message into another of this user's conversations, optionally asking that "
        "conversation's model or agent to answer there."
    )
    parameters = _SEND_PARAMETERS

    def __init__(self, send: Sender) -> None:
        self.send = send

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        conversation_id = str(arguments.get("conversation_id") or "").strip()
        text = str(arguments.get("text") or "")
        if not conversation_id or not text.strip():
            raise ToolError("both `conversation_id` and `text` are required")
        if conversation_id == context.conversation_id:
            raise ToolError("send_message posts to another conversation, not this one")
        return await self.send(context, conversation_id, text, bool(arguments.get("respond")))
