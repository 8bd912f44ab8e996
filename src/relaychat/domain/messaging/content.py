"""Typed message content parts, and the flattened text kept beside them for search."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

from relaychat.llm import types as llm_types

# One set of part models, in the provider layer (the domain may import it, not the reverse).
TextPart = llm_types.TextPart


# A client's image URL: bounded in length, and unknown keys dropped (the API has always
# ignored them here; only the part itself refuses extras). The provider layer's model stays
# unbounded because stored parts that skip this check (a channel's media URLs) reach it.
# Comments, not docstrings: a docstring would become the OpenAPI description.
class ImageUrl(llm_types.ImageUrl):
    model_config = ConfigDict(extra="ignore")

    url: str = Field(max_length=8192)


# The provider layer's image part holding the client's `ImageUrl` above.
class ImageUrlPart(llm_types.ImageUrlPart):
    image_url: ImageUrl


# Parts a client may send; the assistant's tool parts join this union in later issues.
InputPart = Annotated[TextPart | ImageUrlPart, Field(discriminator="type")]


def normalize_content(content: str | list[InputPart]) -> list[dict[str, Any]]:
    """Content as a list of plain part dicts, whether it came as a string or parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [part.model_dump(exclude_none=True) for part in content]


def flatten_text(parts: list[dict[str, Any]]) -> str:
    """The text of all text parts, joined by blank lines."""
    return "\n\n".join(p["text"] for p in parts if p.get("type") == "text" and p.get("text"))
