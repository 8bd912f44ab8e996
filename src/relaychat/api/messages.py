"""Messages of a conversation: list, and post as the signed-in user."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from relaychat.api.deps import CurrentUser, OwnedConversation, SessionDep
from relaychat.api.schemas import MessageOut
from relaychat.domain import messages
from relaychat.domain.content import InputPart, normalize_content

router = APIRouter(prefix="/api/messages", tags=["messages"])


class MessageIn(BaseModel):
    """A person's message: `text`, or `content` as a string or a list of typed parts."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user"] = "user"
    text: str | None = None
    content: str | list[InputPart] | None = None
    parent_message_id: str | None = Field(None, max_length=64)
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_of_text_or_content(self) -> MessageIn:
        if (self.text is None) == (self.content is None):
            raise ValueError("send exactly one of `text` or `content`")
        return self

    def parts(self) -> list[dict[str, Any]]:
        return normalize_content(self.text if self.text is not None else self.content or "")


class MessageList(BaseModel):
    messages: list[MessageOut]


class MessageCreated(BaseModel):
    message: MessageOut


@router.get("/{conversation_id}")
async def list_(conversation: OwnedConversation, session: SessionDep) -> MessageList:
    """Every message of the conversation in creation order, with parent links."""
    rows = await messages.list_messages(session, conversation)
    return MessageList(messages=[MessageOut.of(m) for m in rows])


@router.post("/{conversation_id}", status_code=status.HTTP_201_CREATED)
async def post(
    body: MessageIn, conversation: OwnedConversation, user: CurrentUser, session: SessionDep
) -> MessageCreated:
    """Store a message from the signed-in user; by default it answers the latest message."""
    message = await messages.post_user_message(
        session,
        conversation,
        user,
        content=body.parts(),
        parent_message_id=body.parent_message_id,
        metadata=body.metadata,
    )
    return MessageCreated(message=MessageOut.of(message))
