"""The external message body, as the system relaychat replaces defined it, and the answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.limits import Metadata
from relaychat.domain.messaging.content import InputPart
from relaychat.resources import GenerationOut, MessageView


class ExternalMessageIn(BaseModel):
    """`role: "external"` with `content` (a string or typed parts) and optional metadata."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["external"]
    content: str | list[InputPart]
    metadata: Metadata = Field(default_factory=dict)
    respond: bool | None = Field(None, description="Ask for a reply; default: the key's.")
    parent_message_id: str | None = Field(None, max_length=64)
    user: str | None = Field(
        None, max_length=320, description="The owner (id or email), for keys that may name one."
    )


class ThreadedMessageIn(BaseModel):
    """An external message addressed by sender (`metadata.phoneNumber`/`source`), not by id."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["external"] = "external"
    content: str | list[InputPart]
    metadata: Metadata = Field(default_factory=dict)
    respond: bool | None = None
    user: str | None = Field(None, max_length=320)


class ExternalAccepted(BaseModel):
    """The message was stored (201), and its reply started when one was asked for (202)."""

    message: MessageView
    conversation_id: str
    response_message_id: str | None = Field(description="The reply being written, if any.")
    generation_id: str | None = Field(description="The generation writing it, if any.")


class ExternalAnswered(ExternalAccepted):
    """`Prefer: wait=N` and the reply ended in time (200): the answer holds it."""

    reply: MessageView
    generation: GenerationOut
