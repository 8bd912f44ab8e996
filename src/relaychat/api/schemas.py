"""Response shapes shared by several routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from relaychat.domain.render import conversation_dict, message_dict
from relaychat.markdown import render_parts
from relaychat.storage.models import Conversation, Message, User
from relaychat.types import MessageStatus


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
    unseen_external: int = Field(
        description="External messages the owner has not read yet "
        "(`POST /api/convos/{id}/read` marks them read)."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, conversation: Conversation) -> ConversationOut:
        return cls.model_validate(conversation_dict(conversation))


class MessageOut(BaseModel):
    message_id: str
    conversation_id: str
    parent_message_id: str | None
    role: str
    sender: str | None
    content: list[dict[str, Any]]
    text: str
    status: MessageStatus = Field(title="Status")  # titled as it was when it was a `str`
    error: str | None
    endpoint: str | None
    model: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    metadata: dict[str, Any]
    api_key_id: str | None = Field(
        None, description="The API key an external message came with (`env:…`: a system key)."
    )
    created_at: datetime
    html: str | None = Field(
        None,
        description="The content as safe HTML (markdown rendered, markup escaped); "
        "only when asked with `?render=html`.",
    )
    generation_id: str | None = Field(
        None,
        description="The generation that wrote this reply (for `POST /api/generations/{id}/abort` "
        "while `status` is `streaming`); null for messages no model wrote.",
    )

    @classmethod
    def of(
        cls, message: Message, *, html: bool = False, generation_id: str | None = None
    ) -> MessageOut:
        out = cls.model_validate(message_dict(message))
        out.generation_id = generation_id
        if html:
            out.html = render_parts(message.content or [], message.text or "")
        return out
