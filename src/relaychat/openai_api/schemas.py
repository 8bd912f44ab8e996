"""The chat completion request as OpenAI's SDKs send it, and its checks.

Parameters relaychat does not know are ignored, as most OpenAI-compatible servers do (SDKs
and tools send many); those it knows but cannot honour (`n` > 1, logprobs, audio) are a
400 naming the parameter, never silently dropped. Answers are built on the `openai`
package's own response models (chat_completions.py).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.messaging.chat import CallerTools
from relaychat.domain.messaging.content import InputPart, flatten_text, normalize_content
from relaychat.domain.messaging.conversation_ids import MAX_LENGTH as CONVERSATION_ID_LENGTH
from relaychat.domain.openai_compat.callers import UnsupportedParameter
from relaychat.domain.openai_compat.calls import Call, CallTurn, new_turns
from relaychat.domain.openai_compat.catalog import Target
from relaychat.errors import BadRequest
from relaychat.llm.types import TextPart, ToolChoice, ToolNamed, ToolSpec

_Loose = ConfigDict(extra="ignore")


class SystemMessageIn(BaseModel):
    model_config = _Loose

    role: Literal["system", "developer"]
    content: str | list[TextPart]


class UserMessageIn(BaseModel):
    model_config = _Loose

    role: Literal["user"]
    content: str | list[InputPart]


class FunctionCallIn(BaseModel):
    model_config = _Loose

    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(max_length=100_000)


class ToolCallIn(BaseModel):
    model_config = _Loose

    id: str = Field(min_length=1, max_length=128)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class AssistantMessageIn(BaseModel):
    model_config = _Loose

    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCallIn] | None = Field(None, max_length=128)


class ToolMessageIn(BaseModel):
    model_config = _Loose

    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str


MessageIn = Annotated[
    SystemMessageIn | UserMessageIn | AssistantMessageIn | ToolMessageIn,
    Field(discriminator="role"),
]


class FunctionIn(BaseModel):
    model_config = _Loose

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = Field("", max_length=10_000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolIn(BaseModel):
    model_config = _Loose

    type: Literal["function"]
    function: FunctionIn


class NamedFunctionIn(BaseModel):
    model_config = _Loose

    name: str = Field(min_length=1, max_length=64)


class ToolChoiceFunctionIn(BaseModel):
    """`{"type": "function", "function": {"name": ...}}`: the model must call that tool."""

    model_config = _Loose

    type: Literal["function"]
    function: NamedFunctionIn

    def to_choice(self) -> ToolNamed:
        return ToolNamed(name=self.function.name)


class StreamOptions(BaseModel):
    model_config = _Loose

    include_usage: bool = False


class ChatCompletionIn(BaseModel):
    """POST /v1/chat/completions; `conversation_id` and `include_tool_steps` are relaychat's
    extensions."""

    model_config = _Loose

    model: str = Field(min_length=1, max_length=300)
    messages: list[MessageIn] = Field(min_length=1, max_length=1000)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    stop: str | list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=4)
    n: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    tools: list[ToolIn] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFunctionIn | None = None
    store: bool | None = Field(
        None, description="False: answer and store nothing but the key's audit row."
    )
    include_tool_steps: bool = Field(
        False,
        description="An agent's answer carries the tools it ran on the server as "
        "`tool_steps` (on `choices[0].message`, or a chunk's `choices[0].delta` each).",
    )
    conversation_id: str | None = Field(
        None,
        max_length=CONVERSATION_ID_LENGTH,
        description="Continue this conversation of yours (also the "
        "`x-relaychat-conversation-id` header); default: a new one.",
    )

    def check_supported(self) -> None:
        """Refuse what relaychat cannot do, naming the parameter."""
        if self.n is not None and self.n > 1:
            raise UnsupportedParameter("only one choice is generated: `n` must be 1", field="n")
        if self.logprobs:
            raise UnsupportedParameter("log probabilities are not available", field="logprobs")
        if self.top_logprobs is not None:
            raise UnsupportedParameter("log probabilities are not available", field="top_logprobs")
        if self.audio is not None or "audio" in (self.modalities or ()):
            raise UnsupportedParameter("audio output is not available", field="audio")

    @property
    def stores(self) -> bool:
        return self.store is not False

    def to_call(self, target: Target, conversation_id: str | None) -> Call:
        """The domain's call: system messages joined into the system prompt, the rest turns."""
        system: list[str] = []
        turns: list[CallTurn] = []
        for index, message in enumerate(self.messages):
            where = f"messages[{index}]"
            if isinstance(message, SystemMessageIn):
                system.append(_text(message.content))
            elif isinstance(message, ToolMessageIn):
                result = {
                    "type": "tool_result",
                    "tool_call_id": message.tool_call_id,
                    "content": _text(message.content),
                    "is_error": False,
                }
                turns.append(CallTurn("tool", [result]))
            elif isinstance(message, UserMessageIn):
                content = normalize_content(message.content)
                if not flatten_text(content).strip() and all(p["type"] == "text" for p in content):
                    raise BadRequest("a message needs content", field=f"{where}.content")
                turns.append(CallTurn("user", content))
            else:
                text = _text(message.content or "")
                parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
                parts += [
                    stored_call(
                        call.id,
                        call.function.name,
                        call.function.arguments,
                        f"{where}.tool_calls[{i}].function.arguments",
                    )
                    for i, call in enumerate(message.tool_calls or ())
                ]
                if not text.strip() and not message.tool_calls:
                    raise BadRequest("a message needs content", field=f"{where}.content")
                turns.append(CallTurn("assistant", parts))
        if not turns or turns[-1].role == "assistant":
            raise BadRequest(
                "the last message must be the user's or tool results", field="messages"
            )
        if self.tools and target.agent_id is not None:
            raise UnsupportedParameter(
                "an agent runs its own tools; `tools` is for endpoint models", field="tools"
            )
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return Call(
            target=target,
            # SDKs send the whole history each time; a continued conversation has the rest.
            turns=new_turns(turns) if conversation_id else turns,
            system="\n\n".join(s for s in system if s) or None,
            parameters={
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_tokens": self.max_completion_tokens or self.max_tokens,
                "stop": stop,
            },
            conversation_id=conversation_id,
            tools=caller_tools(
                [
                    ToolSpec(
                        name=tool.function.name,
                        description=tool.function.description,
                        parameters=tool.function.parameters,
                    )
                    for tool in self.tools or ()
                ],
                self.tool_choice.to_choice()
                if isinstance(self.tool_choice, ToolChoiceFunctionIn)
                else self.tool_choice,
            ),
        )


def caller_tools(tools: list[ToolSpec], choice: ToolChoice | None) -> CallerTools | None:
    """The tools the caller runs, with its `tool_choice`; a named one must be among them
    (OpenAI refuses it too, with no tools or another name)."""
    if isinstance(choice, ToolNamed) and choice.name not in {t.name for t in tools}:
        raise BadRequest(
            f"`tool_choice` names {choice.name!r}, which is not among the `tools`",
            field="tool_choice",
        )
    return CallerTools(tools, choice=choice) if tools else None


def stored_call(call_id: str, name: str, arguments: str, field: str) -> dict[str, Any]:
    """A tool call of an earlier reply, sent back by the caller, stored as the runner
    stores its own; `field` names `arguments` when they are not a JSON object."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise BadRequest("arguments must be a JSON object", field=field)
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": parsed}


def _text(content: str | list[TextPart]) -> str:
    return content if isinstance(content, str) else "".join(p.text for p in content)
