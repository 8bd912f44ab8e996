"""Conversations of the signed-in user."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from relaychat.api.deps import CurrentUser, EngineDep, OwnedConversation, SessionDep
from relaychat.api.schemas import ConversationOut
from relaychat.domain import conversations

router = APIRouter(prefix="/api/convos", tags=["conversations"])

# Ids may be UUIDs or readable keys such as `sms-+15551234567`.
CONVERSATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}$"


class ConversationFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=500)
    endpoint: str | None = Field(None, max_length=100)
    model: str | None = Field(None, max_length=200)
    agent_id: str | None = Field(None, max_length=64)
    model_parameters: dict[str, Any] | None = None
    system_prompt: str | None = Field(None, max_length=100_000)


class ConversationCreate(ConversationFields):
    conversation_id: str | None = Field(None, pattern=CONVERSATION_ID_PATTERN)


class ConversationPatch(ConversationFields):
    archived: bool | None = None


class ConversationList(BaseModel):
    conversations: list[ConversationOut]
    next_cursor: str | None


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: ConversationCreate, user: CurrentUser, session: SessionDep, engine: EngineDep
) -> ConversationOut:
    """Start a conversation; the client may choose its id."""
    conversation = await conversations.create_conversation(
        session,
        engine.bus,
        user.id,
        conversation_id=body.conversation_id,
        fields=body.model_dump(exclude={"conversation_id"}),
    )
    return ConversationOut.of(conversation)


@router.get("")
async def list_(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    archived: bool = False,
) -> ConversationList:
    """The user's conversations, most recently active first, a page at a time."""
    page = await conversations.list_conversations(
        session, user.id, limit=limit, cursor=cursor, archived=archived
    )
    return ConversationList(
        conversations=[ConversationOut.of(c) for c in page.conversations],
        next_cursor=page.next_cursor,
    )


@router.get("/{conversation_id}")
async def get(conversation: OwnedConversation) -> ConversationOut:
    """One conversation."""
    return ConversationOut.of(conversation)


@router.patch("/{conversation_id}")
async def patch(
    body: ConversationPatch, conversation: OwnedConversation, session: SessionDep, engine: EngineDep
) -> ConversationOut:
    """Change title, model settings or the archive flag."""
    changes = body.model_dump(include=body.model_fields_set)
    return ConversationOut.of(
        await conversations.update_conversation(session, engine.bus, conversation, changes)
    )


@router.delete("/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(conversation: OwnedConversation, session: SessionDep, engine: EngineDep) -> None:
    """Delete the conversation with all its messages."""
    await conversations.delete_conversation(session, engine.bus, conversation)
