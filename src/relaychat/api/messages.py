"""Messages of a conversation: list, post as the signed-in user, regenerate a reply.

`POST /api/messages/{conversation_id}` is the one route people and machines share: a path
cannot be routed by header, so it stays here and hands `x-api-key` callers (a body with
`role: "external"`) to the gateway (`relaychat.gateway.external`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from relaychat import logs
from relaychat.api.schemas import MessageOut
from relaychat.domain.answering import generations
from relaychat.domain.limits import Metadata
from relaychat.domain.messaging import chat, messages
from relaychat.domain.messaging.content import InputPart, normalize_content
from relaychat.domain.messaging.conversations import get_sender_conversation
from relaychat.errors import Unauthenticated
from relaychat.gateway import external as external_gateway
from relaychat.gateway.schemas import ExternalAnswered, ExternalMessageIn
from relaychat.http.deps import (
    EngineDep,
    OwnedConversation,
    SessionDep,
    bearer,
    token_user_id,
)
from relaychat.services import Services
from relaychat.statuses import MessageRole

router = APIRouter(prefix="/api/messages", tags=["messages"])


class MessageIn(BaseModel):
    """A person's message: `text`, or `content` as a string or a list of typed parts."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user"] = "user"
    text: str | None = None
    content: str | list[InputPart] | None = None
    parent_message_id: str | None = Field(
        None,
        max_length=64,
        description="The message this one answers; default: the latest. An explicit `null` "
        "starts a new branch at the root (the edit of a first message).",
    )
    metadata: Metadata | None = None
    respond: bool | None = Field(
        None, description="Start a reply; default: when the conversation has an endpoint."
    )

    def starts_root(self) -> bool:
        """Whether `parent_message_id` was sent as an explicit null."""
        return "parent_message_id" in self.model_fields_set and self.parent_message_id is None

    @model_validator(mode="after")
    def _one_of_text_or_content(self) -> MessageIn:
        if self.text is None and self.content is None:
            raise ValueError(
                "a message needs `text` (a string) or `content` (a string or a list of parts)"
            )
        if self.text is not None and self.content is not None:
            raise ValueError("send `text` or `content`, not both")
        return self

    def parts(self) -> list[dict[str, Any]]:
        return normalize_content(self.text if self.text is not None else self.content or "")


class MessageList(BaseModel):
    messages: list[MessageOut]


class MessagePosted(BaseModel):
    message: MessageOut
    response_message_id: str | None = None
    generation_id: str | None = None


class ReplyStarted(BaseModel):
    response_message_id: str
    generation_id: str


Render = Annotated[
    Literal["html"] | None,
    Query(description="`html`: add each message's content as safe HTML (`html`), for browsers"),
]


@router.get("/{conversation_id}")
async def list_(
    conversation: OwnedConversation, session: SessionDep, render: Render = None
) -> MessageList:
    """Every message of the conversation in creation order, with parent links."""
    rows = await messages.list_messages(session, conversation)
    writers = await generations.writers_of(session, conversation.id)
    return MessageList(
        messages=[
            MessageOut.of(m, html=render == "html", generation_id=writers.get(m.id)) for m in rows
        ]
    )


@router.get("/{conversation_id}/{message_id}")
async def get(
    message_id: Annotated[str, PathParam(max_length=64)],
    conversation: OwnedConversation,
    session: SessionDep,
    render: Render = None,
) -> MessageOut:
    """One message of the conversation."""
    message = await messages.get_message(session, conversation, message_id)
    writers = await generations.writers_of(session, conversation.id, message.id)
    return MessageOut.of(message, html=render == "html", generation_id=writers.get(message.id))


def _role(value: Any) -> MessageRole:
    role = value.get("role") if isinstance(value, dict) else getattr(value, "role", None)
    return MessageRole.EXTERNAL if role == MessageRole.EXTERNAL else MessageRole.USER


# One path, two callers: people (JWT) and external systems (`role: "external"`, API key).
PostBody = Annotated[
    Annotated[MessageIn, Tag(MessageRole.USER)]
    | Annotated[ExternalMessageIn, Tag(MessageRole.EXTERNAL)],
    Discriminator(_role),
]


# Shared with machines: an external body goes to the gateway's `external.handle`, the same
# pipeline as POST /api/external/messages. The docstring below is also the OpenAPI text.
@router.post(
    "/{conversation_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {
            "description": "An external message with `Prefer: wait=N`: the reply ended in time",
            "model": ExternalAnswered,
        },
        201: {"description": "Stored; no reply was asked for", "model": MessagePosted},
    },
    response_model=MessagePosted,
    # Documented, not injected: the credentials are read below, by whichever path needs
    # them (each injected dependency costs FastAPI's resolver more than the read itself).
    openapi_extra={"security": [{"HTTPBearer": []}, {"ApiKey": []}]},
)
async def post(
    body: PostBody,
    # Unbounded here: the gateway refuses a bad id by the one id rule
    # (`invalid_conversation_id`), people's posts answer 404 for an id that cannot exist.
    conversation_id: Annotated[str, PathParam()],
    request: Request,
    response: Response,
) -> Any:
    """Store a message and start the reply (202), or only store it (201).

    People send `{text}` or `{content}` with their access token; by default the message
    answers the latest one. External systems send `role: "external"` with an API key
    (`x-api-key`) and go through the gateway: permissions, owner resolution, idempotency,
    rate limits and audit.
    """
    # The hottest route: services are read from the app, not injected, because every
    # dependency costs FastAPI's resolver more than the lookup (bench.gateway's profile).
    services: Services = request.app.state.services
    if isinstance(body, ExternalMessageIn):
        return await external_gateway.handle(request, services, body, conversation_id)
    credentials = await bearer(request)
    if credentials is None and request.headers.get("x-api-key"):
        raise Unauthenticated(
            'an API key posts as an external system: add `"role": "external"` to the body '
            "(people send `Authorization: Bearer <access token>`)"
        )
    user_id = await token_user_id(services, credentials)
    # A session only here: the gateway's requests open what they need themselves.
    async with services.sessionmaker() as session:
        conversation, sender = await get_sender_conversation(session, user_id, conversation_id)
        sent = await chat.send_message(
            session,
            services.chat,
            conversation,
            role=MessageRole.USER,
            sender=sender,
            content=body.parts(),
            parent_message_id=body.parent_message_id,
            new_root=body.starts_root(),
            metadata=body.metadata,
            respond=body.respond,
        )
    message = MessageOut.model_validate(sent.message, from_attributes=True)
    if sent.started is None:
        response.status_code = status.HTTP_201_CREATED
        return MessagePosted(message=message)
    logs.bind(generation_id=sent.started.generation_id)  # the access line names the reply
    return MessagePosted(
        message=message,
        response_message_id=sent.started.response_id,
        generation_id=sent.started.generation_id,
    )


@router.post("/{conversation_id}/{message_id}/regenerate", status_code=status.HTTP_202_ACCEPTED)
async def regenerate(
    message_id: str, conversation: OwnedConversation, session: SessionDep, engine: EngineDep
) -> ReplyStarted:
    """A new reply as a sibling of an assistant message (or a reply to a user message)."""
    started = await chat.regenerate(session, engine, conversation, message_id)
    logs.bind(generation_id=started.generation_id)
    return ReplyStarted(
        response_message_id=started.response_id, generation_id=started.generation_id
    )
