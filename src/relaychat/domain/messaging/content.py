"""Typed message content parts, and the flattened text kept beside them for search."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Part):
    type: Literal["text"] = "text"
    text: str


class ImageUrl(BaseModel):
    url: str = Field(max_length=8192)
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrlPart(_Part):
    type: Literal["image_url"] = "image_url"
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
