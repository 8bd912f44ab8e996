"""The fake upstream's configuration, `!fake` directives, and the reply it plans for a request."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_REPLY = "Hello from the fake model. This reply is deterministic and streamed word by word."
DIRECTIVE_PREFIX = "!fake "

FailureKind = Literal[
    "auth",  # 401
    "bad_request",  # 400
    "rate_limit",  # 429 with retry-after
    "server_error",  # 500
    "unavailable",  # 503
    "hang",  # headers sent, then nothing until the client leaves
    "stall",  # some tokens, then nothing until the client leaves
    "cut",  # some tokens, then the connection drops without the end of the stream
    "garbage",  # some tokens, then a data line that is not JSON
    "error_event",  # some tokens, then the provider's in-stream error event
]
FinishKind = Literal["stop", "length", "tool_calls"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScriptToolCall(_Strict):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class ScriptTurn(_Strict):
    """One scripted assistant turn: text, tool calls, or text followed by tool calls."""

    text: str | None = None
    tool_calls: list[ScriptToolCall] = Field(default_factory=list)


class FakeConfig(_Strict):
    """Every knob of the fake; a `!fake` directive overrides any of them for one request."""

    reply: str = DEFAULT_REPLY
    echo: bool = False
    ttft_ms: int = Field(0, ge=0)
    token_delay_ms: int = Field(0, ge=0)
    models: list[str] = Field(default_factory=lambda: ["fake-model", "fake-model-mini"])
    api_key: str | None = None
    script: list[ScriptTurn] | None = None
    fail: FailureKind | None = None
    fail_times: int | None = Field(None, ge=1)
    fail_after_tokens: int = Field(2, ge=0)
    retry_after_ms: int = Field(50, ge=0)
    arg_chunk_chars: int = Field(7, ge=1)
    key: str | None = None
    # False: report no token counts, as OpenAI-compatible servers that ignore
    # `stream_options.include_usage` do (Anthropic's format requires the counts: zeros).
    usage: bool = True

    @field_validator("script", mode="before")
    @classmethod
    def _strings_are_text_turns(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"text": turn} if isinstance(turn, str) else turn for turn in value]
        return value


class DirectiveError(ValueError):
    """A `!fake` directive that is not a JSON object of known `FakeConfig` fields."""


def split_directive(text: str) -> tuple[dict[str, Any] | None, str]:
    """The first directive line of `text`, if any, and the text without it.

    Usually the first line; a later one counts too, because relaychat may put a label
    (such as `[message from sms]`) before what an external sender wrote.
    """
    lines = text.split("\n")
    index = next((i for i, line in enumerate(lines) if line.startswith(DIRECTIVE_PREFIX)), None)
    if index is None:
        return None, text
    first = lines[index]
    rest = "\n".join(lines[:index] + lines[index + 1 :])
    try:
        overrides = json.loads(first[len(DIRECTIVE_PREFIX) :])
    except ValueError as exc:
        raise DirectiveError(f"!fake directive is not JSON: {exc}") from exc
    if not isinstance(overrides, dict):
        raise DirectiveError("!fake directive must be a JSON object")
    return overrides, rest


def apply_directive(config: FakeConfig, overrides: dict[str, Any] | None) -> FakeConfig:
    """The config with a directive's fields applied, validated."""
    if not overrides:
        return config
    try:
        return FakeConfig.model_validate({**config.model_dump(), **overrides})
    except ValidationError as exc:
        raise DirectiveError(f"bad !fake directive: {exc}") from exc


_TOKEN = re.compile(r"\S+\s*|\s+")


def tokenize(text: str) -> list[str]:
    """Words with their trailing whitespace; joining the tokens gives back the text."""
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class FakeInput:
    """What the fake needs from a request, whatever its wire format."""

    model: str
    user_text: str
    turn: int
    prompt_text: str
    max_tokens: int | None


@dataclass(frozen=True)
class PlannedCall:
    """A tool call to send: `ordinal` numbers the calls of the turn from 0."""

    ordinal: int
    id: str | None
    name: str
    arguments: str
    fragments: list[str]

    def call_id(self, prefix: str, turn: int) -> str:
        """The given id, or a deterministic one such as `call_fake_1_0`."""
        return self.id or f"{prefix}_fake_{turn}_{self.ordinal}"


@dataclass(frozen=True)
class Plan:
    """The whole answer to one request, before a wire format renders it."""

    turn: int
    tokens: list[str]
    calls: list[PlannedCall]
    finish: FinishKind
    prompt_tokens: int
    completion_tokens: int
    # Whether the answer reports its token counts (`FakeConfig.usage`).
    usage: bool = True

    @property
    def text(self) -> str:
        """The reply text."""
        return "".join(self.tokens)


def make_plan(config: FakeConfig, request: FakeInput) -> Plan:
    """The reply: the script's turn for this point of the exchange, else echo or `reply`."""
    scripted = (
        config.script[request.turn]
        if config.script is not None and request.turn < len(config.script)
        else None
    )
    if scripted is not None:
        text = scripted.text or ""
        tool_calls = scripted.tool_calls
    else:
        text = request.user_text if config.echo else config.reply
        tool_calls = []
    tokens = tokenize(text)
    calls = [_planned(i, call, config.arg_chunk_chars) for i, call in enumerate(tool_calls)]
    finish: FinishKind = "tool_calls" if calls else "stop"
    if request.max_tokens is not None and len(tokens) > request.max_tokens:
        tokens, calls, finish = tokens[: request.max_tokens], [], "length"
    completion = len(tokens) + sum(len(call.fragments) for call in calls)
    return Plan(
        turn=request.turn,
        tokens=tokens,
        calls=calls,
        finish=finish,
        prompt_tokens=len(tokenize(request.prompt_text)),
        completion_tokens=completion,
        usage=config.usage,
    )


def _planned(ordinal: int, call: ScriptToolCall, chunk: int) -> PlannedCall:
    arguments = json.dumps(call.arguments, separators=(",", ":"))
    fragments = [arguments[i : i + chunk] for i in range(0, len(arguments), chunk)]
    return PlannedCall(ordinal, call.id, call.name, arguments, fragments)
