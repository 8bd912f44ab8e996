"""Provider-neutral chat requests and stream events, so the engine drives every provider alike.

A stream is a sequence of `StreamEvent`s that ends with exactly one `Finish`, or raises a
`relaychat.llm.errors.ProviderError`:

    (TextDelta | ReasoningDelta | ToolCallDelta | ToolCall)*  Usage?  Finish

`ToolCallDelta`s carry the raw argument fragments as they arrive (for live display);
each tool call is also reported once, complete and parsed, as a `ToolCall` before `Usage`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

Role = Literal["user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- request -------------------------------------------------------------------------------


# The part models are shared with the domain, which builds a client's input on them
# (relaychat.domain.messaging.content): a change here changes what the API accepts.


class TextPart(_Model):
    type: Literal["text"] = "text"
    text: str


class ImageUrl(_Model):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrlPart(_Model):
    """An image by http(s) URL or `data:` URL; same shape as stored message parts."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageUrl


class ToolCallPart(_Model):
    """A tool call the assistant made earlier, replayed in the history with its signature."""

    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    signature: str | None = None


class ToolResultPart(_Model):
    """The output of a tool call, sent back to the model in a `tool` message."""

    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    content: str
    is_error: bool = False


ContentPart = Annotated[
    TextPart | ImageUrlPart | ToolCallPart | ToolResultPart, Field(discriminator="type")
]


class ChatMessage(_Model):
    """One turn of the history; `tool` messages hold only `ToolResultPart`s."""

    role: Role
    content: list[ContentPart]

    @field_validator("content", mode="before")
    @classmethod
    def _string_is_text(cls, value: Any) -> Any:
        return [{"type": "text", "text": value}] if isinstance(value, str) else value

    @property
    def text(self) -> str:
        """The text parts joined by blank lines."""
        return "\n\n".join(p.text for p in self.content if isinstance(p, TextPart) and p.text)


class ToolSpec(_Model):
    """A function the model may call; `parameters` is a JSON schema for its arguments."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolNamed(_Model):
    """A `tool_choice` that names the one function the model must call (each provider has
    its own way of saying so: the adapters translate it)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")


ToolChoice = Literal["auto", "none", "required"] | ToolNamed


class ChatRequest(_Model):
    """Everything an adapter needs for one generation."""

    model: str
    messages: list[ChatMessage]
    system: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, gt=0)
    stop: list[str] | None = None
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_choice: ToolChoice | None = None


# -- stream events -------------------------------------------------------------------------


# The events that come once per chunk are plain frozen dataclasses: a pydantic model
# validates its fields on every construction, which costs as much as reading the chunk.
# Adapters build them from values they have checked; the type adapter below still
# validates all of them alike.


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta:
    text: str
    type: Literal["text_delta"] = "text_delta"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningDelta:
    """Visible reasoning ("thinking") text, for providers and servers that stream it."""

    text: str
    type: Literal["reasoning_delta"] = "reasoning_delta"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallDelta:
    """A fragment of a tool call; `id` and `name` arrive with the first fragment."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments_delta: str = ""
    type: Literal["tool_call_delta"] = "tool_call_delta"


class ToolCall(_Model):
    """A complete tool call; `arguments` is None when the model sent something not a JSON object.

    `signature` is an opaque token some providers (Gemini) need back with the call in the
    history: store it in the `ToolCallPart`.
    """

    type: Literal["tool_call"] = "tool_call"
    index: int
    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str
    signature: str | None = None


class Usage(_Model):
    type: Literal["usage"] = "usage"
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


class Finish(_Model):
    """The last event; `raw_reason` is the provider's own word for it."""

    type: Literal["finish"] = "finish"
    reason: FinishReason
    raw_reason: str | None = None


StreamEvent = Annotated[
    TextDelta | ReasoningDelta | ToolCallDelta | ToolCall | Usage | Finish,
    Field(discriminator="type"),
]
stream_event_adapter: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


def parse_arguments(raw: str) -> dict[str, Any] | None:
    """Tool arguments as a dict; an empty string means no arguments, junk means None."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class ToolCallAssembler:
    """Joins streamed tool-call fragments, keyed by the provider's index, into `ToolCall`s."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[str, str, list[str]]] = {}

    def feed(self, index: int, *, id: str | None, name: str | None, fragment: str) -> ToolCallDelta:
        """Record one fragment and return it as an event (ids and names fill in as they come)."""
        known_id, known_name, parts = self._calls.get(index, ("", "", []))
        parts.append(fragment)
        self._calls[index] = (known_id or id or "", known_name or name or "", parts)
        return ToolCallDelta(index=index, id=id, name=name, arguments_delta=fragment)

    def pop(self, index: int) -> ToolCall | None:
        """The assembled call at `index`, removed from the pending ones."""
        entry = self._calls.pop(index, None)
        if entry is None:
            return None
        call_id, name, parts = entry
        raw = "".join(parts)
        return ToolCall(
            index=index, id=call_id, name=name, arguments=parse_arguments(raw), raw_arguments=raw
        )

    def pop_all(self) -> list[ToolCall]:
        """Every pending call, in index order."""
        return [call for index in sorted(self._calls) if (call := self.pop(index)) is not None]


class Completion(_Model):
    """A whole stream collected: what non-streaming callers (titles, tests) want."""

    text: str
    reasoning: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: FinishReason
    raw_finish_reason: str | None = None


async def collect(events: AsyncIterable[StreamEvent]) -> Completion:
    """Read a stream to its end and gather text, tool calls, usage and the finish reason."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    usage: Usage | None = None
    finish: Finish | None = None
    async for event in events:
        match event:
            case TextDelta():
                text.append(event.text)
            case ReasoningDelta():
                reasoning.append(event.text)
            case ToolCall():
                calls.append(event)
            case Usage():
                usage = event
            case Finish():
                finish = event
    if finish is None:
        # Adapters guarantee a Finish; a hand-made stream might not, so say so plainly.
        raise ValueError("stream ended without a finish event")
    return Completion(
        text="".join(text),
        reasoning="".join(reasoning),
        tool_calls=calls,
        usage=usage,
        finish_reason=finish.reason,
        raw_finish_reason=finish.raw_reason,
    )
