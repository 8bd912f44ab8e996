"""Response shapes shared by several routes; the entities' own are in `relaychat.resources`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from relaychat.markdown import render_parts
from relaychat.resources import ConversationOut, MessageView
from relaychat.statuses import UserRole
from relaychat.storage.models import Message, User

__all__ = ["ConversationOut", "MessageOut", "UserOut"]


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: UserRole = Field(title="Role")
    phone_number: str | None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            phone_number=user.phone_number,
            created_at=user.created_at,
        )


class MessageOut(MessageView):
    """A message as the REST API answers it; events carry the `MessageView` it extends."""

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
        out = cls.model_validate(message)
        out.generation_id = generation_id
        if html:
            out.html = render_parts(message.content or [], message.text or "")
        return out
