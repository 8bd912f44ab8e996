"""The entities as clients see them: one pydantic model each, built straight from the row.

A REST answer, an event on the bus and a webhook's payload carry the same model, so the
three cannot drift apart: `ConversationOut.model_validate(row)` is the conversation
everywhere, and `MessageView.model_validate(row)` the message (REST's `MessageOut`, in
`api/schemas.py`, adds what only REST answers: the content as HTML, the generation
writing it).

Why here, beside `errors.py` and below every layer: `api/` and `gateway/` answer with
these models, `domain/` builds them for its events and webhooks, and `realtime/events.py`
types its events with them. In `api/` the lower layers could not import them; in
`domain/` the event bus (an adapter) could not. It imports nothing but pydantic and the
enumerations of `relaychat.statuses`.

Times are `datetime`s, which pydantic writes as RFC 3339 in UTC with a `Z` (rows hold
UTC); a few older answers document theirs as plain strings (`Timestamp`), written alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)

from relaychat.statuses import AgentVisibility, GenerationStatus, MessageRole, MessageStatus


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as pydantic writes the models' datetimes."""
    return moment.isoformat().replace("+00:00", "Z")


# A time an answer documents as a plain string (as it always has), written like the rest.
Timestamp = Annotated[datetime, PlainSerializer(iso, return_type=str)]


def _filled(empty: type[Any]) -> BeforeValidator:
    # A row built in this process and not yet flushed has None where the column's
    # default (an empty collection, 0) has not been applied yet.
    return BeforeValidator(lambda value: empty() if value is None else value)


class _FromRow(BaseModel):
    """`Model.model_validate(row)` reads the row's attributes; the aliases name the
    attributes that differ from the field (`id`, `meta`, `user_id`), beside the field's own
    name, so a model also reads back its own JSON (events are parsed on the way in)."""

    model_config = ConfigDict(from_attributes=True)


class ConversationOut(_FromRow):
    """A conversation: REST answers, `conversation.*` events and webhooks."""

    conversation_id: str = Field(validation_alias=AliasChoices("conversation_id", "id"))
    title: str | None
    endpoint: str | None
    model: str | None
    agent_id: str | None
    model_parameters: Annotated[dict[str, Any], _filled(dict)]
    system_prompt: str | None
    archived: bool
    unseen_external: Annotated[int, _filled(int)] = Field(
        description="External messages the owner has not read yet "
        "(`POST /api/convos/{id}/read` marks them read)."
    )
    created_at: datetime
    updated_at: datetime


class MessageView(_FromRow):
    """A message: `message.*` events, webhooks and the gateway's answers; REST adds to it."""

    message_id: str = Field(validation_alias=AliasChoices("message_id", "id"))
    conversation_id: str
    parent_message_id: str | None
    role: MessageRole = Field(title="Role")  # titled as it was when it was a `str`
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
    tokens_estimated: bool = Field(
        False,
        description="The token counts are relaychat's estimate: the provider reported none.",
    )
    # The column is `metadata`; its attribute is `meta`, for every mapped class has a
    # `metadata` (SQLAlchemy's MetaData): the row is read by `meta` before the field's name.
    metadata: Annotated[dict[str, Any], _filled(dict)] = Field(
        validation_alias=AliasChoices("meta", "metadata")
    )
    # The key an external message came with: a key's id, or `env:…` for a system key.
    api_key_id: str | None = Field(
        None, description="The API key an external message came with (`env:…`: a system key)."
    )
    created_at: datetime


class GenerationOut(_FromRow):
    """A generation's state (never the worker that runs it)."""

    generation_id: str = Field(validation_alias=AliasChoices("generation_id", "id"))
    conversation_id: str
    response_message_id: str
    endpoint: str
    model: str
    status: GenerationStatus = Field(title="Status")
    finish_reason: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    request_id: str | None = Field(
        description="The `X-Request-Id` of the request that asked for it (a scheduled "
        "post: its run's id); its log lines carry it.",
    )


class AgentOut(_FromRow):
    """An agent as those who may use it see it."""

    agent_id: str = Field(validation_alias=AliasChoices("agent_id", "id"))
    owner_id: str = Field(validation_alias=AliasChoices("owner_id", "user_id"))
    name: str
    description: str | None
    instructions: str | None
    endpoint: str
    model: str | None
    model_parameters: Annotated[dict[str, Any], _filled(dict)]
    tools: Annotated[list[str], _filled(list)]
    mcp_servers: Annotated[list[str], _filled(list)]
    visibility: AgentVisibility = Field(title="Visibility")
    created_at: Timestamp
    updated_at: Timestamp
