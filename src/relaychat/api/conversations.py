"""Conversations of the signed-in user."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from relaychat.api.schemas import ConversationOut
from relaychat.domain.messaging import conversation_ids, conversations
from relaychat.http.deps import CurrentUser, EngineDep, OwnedConversation, ServicesDep, SessionDep

router = APIRouter(prefix="/api/convos", tags=["conversations"])


class ConversationFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=500)
    endpoint: str | None = Field(None, max_length=100)
    model: str | None = Field(None, max_length=200)
    agent_id: str | None = Field(None, max_length=64)
    model_parameters: dict[str, Any] | None = None
    system_prompt: str | None = Field(None, max_length=100_000)


class ConversationCreate(ConversationFields):
    # Checked by the domain's one id rule (`invalid_conversation_id`), shown here for clients.
    conversation_id: str | None = Field(
        None,
        description="A UUID or a readable key such as `support-42`; default: a new UUID.",
        json_schema_extra={"pattern": conversation_ids.ID_PATTERN, "maxLength": 128},
    )


class ConversationPatch(ConversationFields):
    archived: bool | None = None


class ConversationList(BaseModel):
    conversations: list[ConversationOut]
    next_cursor: str | None


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: ConversationCreate,
    user: CurrentUser,
    session: SessionDep,
    engine: EngineDep,
    services: ServicesDep,
) -> ConversationOut:
    """Start a conversation; the client may choose its id."""
    fields = body.model_dump(exclude={"conversation_id"})
    await conversations.check_target(session, user, services.providers, fields)
    conversation = await conversations.create_conversation(
        session,
        engine.bus,
        user.id,
        conversation_id=body.conversation_id,
        fields=fields,
    )
    return ConversationOut.model_validate(conversation)


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
        conversations=[ConversationOut.model_validate(c) for c in page.conversations],
        next_cursor=page.next_cursor,
    )


@router.get("/{conversation_id}")
async def get(conversation: OwnedConversation) -> ConversationOut:
    """One conversation."""
    return ConversationOut.model_validate(conversation)


@router.patch("/{conversation_id}")
async def patch(
    body: ConversationPatch,
    conversation: OwnedConversation,
    user: CurrentUser,
    session: SessionDep,
    engine: EngineDep,
    services: ServicesDep,
) -> ConversationOut:
    """Change title, model settings or the archive flag; `model_parameters` is a merge patch
    (RFC 7396: the keys named change, `null` removes one, the others stay)."""
    changes = body.model_dump(include=body.model_fields_set)
    await conversations.check_target(session, user, services.providers, changes, conversation)
    return ConversationOut.model_validate(
        await conversations.update_conversation(session, engine.bus, conversation, changes)
    )


@router.post("/{conversation_id}/read")
async def read(
    conversation: OwnedConversation, session: SessionDep, engine: EngineDep
) -> ConversationOut:
    """Mark the conversation's external messages read (`unseen_external` back to 0)."""
    return ConversationOut.model_validate(
        await conversations.mark_read(session, engine.bus, conversation)
    )


@router.delete("/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(conversation: OwnedConversation, session: SessionDep, engine: EngineDep) -> None:
    """Delete the conversation with all its messages."""
    await conversations.delete_conversation(session, engine.bus, conversation)
