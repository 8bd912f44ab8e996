"""Response shapes shared by several routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from relaychat.storage.models import Conversation, Message, User


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: Literal["admin", "user"]
    phone_number: str | None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role="admin" if user.role == "admin" else "user",
            phone_number=user.phone_number,
            created_at=user.created_at,
        )


class ConversationOut(BaseModel):
    conversation_id: str
    title: str | None
    endpoint: str | None
    model: str | None
    agent_id: str | None
    model_parameters: dict[str, Any]
    system_prompt: str | None
    archived: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, conversation: Conversation) -> ConversationOut:
        return cls(
            conversation_id=conversation.id,
            title=conversation.title,
            endpoint=conversation.endpoint,
            model=conversation.model,
            agent_id=conversation.agent_id,
            model_parameters=conversation.model_parameters or {},
            system_prompt=conversation.system_prompt,
            archived=conversation.archived,
            created_at=conversation.created_at,
            updated_at=conversation.updated_at,
        )


class MessageOut(BaseModel):
    message_id: str
    conversation_id: str
    parent_message_id: str | None
    role: str
    sender: str | None
    content: list[dict[str, Any]]
    text: str
    status: str
    error: str | None
    endpoint: str | None
    model: str | None
    metadata: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, message: Message) -> MessageOut:
        return cls(
            message_id=message.id,
            conversation_id=message.conversation_id,
            parent_message_id=message.parent_message_id,
            role=message.role,
            sender=message.sender,
            content=message.content,
            text=message.text,
            status=message.status,
            error=message.error,
            endpoint=message.endpoint,
            model=message.model,
            metadata=message.meta or {},
            created_at=message.created_at,
        )
