"""The external message body, as the system relaychat replaces defined it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.content import InputPart
from relaychat.domain.limits import Metadata


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
