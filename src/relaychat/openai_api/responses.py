"""POST /v1/responses and GET /v1/responses/{id}: the subset of OpenAI's Responses API that
SDKs use (text input or message items, `instructions`, `previous_response_id`, `store`,
`stream` with the typed events, function tools the caller runs: `function_call` output
items, `function_call_output` input items), on the same calls as chat completions.

A response is a stored reply: its id is `resp_` and the reply message's id, so
`previous_response_id` continues the conversation from that reply (a branch when it is not
the latest), and GET reads the reply back as long as its conversation exists.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types.responses import (
    FunctionTool,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseUsage,
)
from openai.types.responses import (
    Response as OpenAIResponse,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from relaychat.domain.ids import new_id
from relaychat.domain.openai_compat import catalog
from relaychat.domain.openai_compat.callers import UnsupportedParameter
from relaychat.domain.openai_compat.calls import (
    Call,
    CallTurn,
    ReplyEnd,
    ReplyPiece,
    ToolStep,
    begin,
    follow_reply,
    owned_reply,
    start_call,
    stream_unstored,
    unanswered_calls,
    whole_reply,
)
from relaychat.errors import BadRequest
from relaychat.llm.types import ToolNamed, ToolSpec
from relaychat.openai_api.callers import (
    Caller,
    answer_headers,
    finish_audit,
    note_call,
    services_of,
)
from relaychat.openai_api.chat_completions import CONVERSATION_HEADER, reply_failure
from relaychat.openai_api.schemas import caller_tools, stored_call
from relaychat.realtime.sse import SSE_HEADERS
from relaychat.statuses import AuditOutcome, MessageStatus

router = APIRouter(tags=["openai"])

RESPONSE_PREFIX = "resp_"
_Loose = ConfigDict(extra="ignore")
_STATUSES: dict[str, Any] = {
    MessageStatus.COMPLETE: "completed",
    MessageStatus.STREAMING: "in_progress",
    MessageStatus.UNFINISHED: "incomplete",
    MessageStatus.ERROR: "failed",
}


class InputText(BaseModel):
    model_config = _Loose

    type: Literal["input_text", "output_text"]
    text: str


class InputMessage(BaseModel):
    model_config = _Loose

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText]


class FunctionCallItem(BaseModel):
    """A call of the caller's tool from an earlier response, sent back with the history."""

    model_config = _Loose

    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(max_length=100_000)


class FunctionCallOutputItem(BaseModel):
    """The caller's result of one of those calls."""

    model_config = _Loose

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=128)
    output: str | list[InputText]


InputItem = Annotated[
    Annotated[InputMessage, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    # A message item may leave its `type` out (the SDK's EasyInputMessage).
    Discriminator(lambda item: item.get("type", "message") if isinstance(item, dict) else None),
]


class FunctionToolIn(BaseModel):
    """A function tool the caller offers and runs; other kinds (OpenAI's hosted tools) are
    refused by name in `to_call`."""

    model_config = _Loose

    type: str
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(None, max_length=10_000)
    parameters: dict[str, Any] | None = None


class ToolChoiceFunctionIn(BaseModel):
    """`{"type": "function", "name": ...}`: the model must call that tool."""

    model_config = _Loose

    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64)


class ResponseCreateIn(BaseModel):
    """POST /v1/responses."""

    model_config = _Loose

    model: str = Field(min_length=1, max_length=300)
    input: str | list[InputItem] = Field(min_length=1)
    instructions: str | None = Field(None, max_length=100_000)
    previous_response_id: str | None = Field(None, max_length=200)
    store: bool | None = None
    stream: bool | None = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_output_tokens: int | None = Field(None, gt=0)
    tools: list[FunctionToolIn] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFunctionIn | None = None

    def tool_specs(self) -> list[ToolSpec]:
        specs = []
        for index, tool in enumerate(self.tools or ()):
            if tool.type != "function":
                raise UnsupportedParameter(
                    f"only function tools are available, not {tool.type!r}",
                    field=f"tools[{index}].type",
                )
            if tool.name is None:
                raise BadRequest("a function tool needs a name", field=f"tools[{index}].name")
            specs.append(
                ToolSpec(
                    name=tool.name,
                    description=tool.description or "",
                    **({"parameters": tool.parameters} if tool.parameters is not None else {}),
                )
            )
        return specs

    def to_call(self, target: catalog.Target) -> Call:
        specs = self.tool_specs()
        if specs and target.agent_id is not None:
            raise UnsupportedParameter(
                "an agent runs its own tools; `tools` is for endpoint models", field="tools"
            )
        items = (
            [InputMessage(role="user", content=self.input)]
            if isinstance(self.input, str)
            else self.input
        )
        system = [self.instructions] if self.instructions else []
        turns: list[CallTurn] = []
        for index, item in enumerate(items):
            if isinstance(item, FunctionCallItem):
                call = stored_call(
                    item.call_id, item.name, item.arguments, f"input[{index}].arguments"
                )
                if turns and turns[-1].role == "assistant":  # the calls of one reply
                    turns[-1].content.append(call)
                else:
                    turns.append(CallTurn("assistant", [call]))
                continue
            text = _text(item.output if isinstance(item, FunctionCallOutputItem) else item.content)
            if isinstance(item, FunctionCallOutputItem):
                result = {
                    "type": "tool_result",
                    "tool_call_id": item.call_id,
                    "content": text,
                    "is_error": False,
                }
                turns.append(CallTurn("tool", [result]))
            elif item.role in {"system", "developer"}:
                system.append(text)
            elif text.strip():
                turns.append(CallTurn(item.role, [{"type": "text", "text": text}]))  # type: ignore[arg-type]
        if not turns or turns[-1].role == "assistant":
            raise BadRequest(
                "the input must end with the user's message or function call outputs",
                field="input",
            )
        choice = self.tool_choice
        return Call(
            target=target,
            turns=turns,
            system="\n\n".join(system) or None,
            parameters={
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_tokens": self.max_output_tokens,
            },
            tools=caller_tools(
                specs,
                ToolNamed(name=choice.name) if isinstance(choice, ToolChoiceFunctionIn) else choice,
            ),
        )


def _text(content: str | list[InputText]) -> str:
    return content if isinstance(content, str) else "".join(p.text for p in content)


def _message_id(response_id: str) -> str:
    return response_id.removeprefix(RESPONSE_PREFIX)


def _message_item(response_id: str, text: str, status: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id=f"msg_{_message_id(response_id)}",
        type="message",
        role="assistant",
        status="completed" if status == "completed" else "in_progress",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def _call_item(call: dict[str, Any]) -> ResponseFunctionToolCall:
    """A call of the caller's tool as an output item; `call_id` is what the caller's
    `function_call_output` answers."""
    arguments = call["arguments"]
    return ResponseFunctionToolCall(
        type="function_call",
        id=f"fc_{call['id']}",
        call_id=call["id"],
        name=call["name"],
        arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
        status="completed",
    )


def _response(
    response_id: str,
    *,
    model: str,
    created: float,
    status: Any,
    text: str | None,
    end: ReplyEnd | None = None,
    previous: str | None = None,
    instructions: str | None = None,
    tools: Sequence[ToolSpec] = (),
    tool_choice: Any = "auto",
) -> OpenAIResponse:
    """The response; its output is the reply's message (left out when the reply is only
    calls of the caller's tools), then those calls."""
    calls = end.tool_calls if end is not None else ()
    output: list[Any] = []
    if text is not None and (text or not calls):
        output.append(_message_item(response_id, text, status))
    output += [_call_item(call) for call in calls]
    usage = None
    if end is not None and end.prompt_tokens is not None:
        prompt, completion = end.prompt_tokens or 0, end.completion_tokens or 0
        usage = ResponseUsage(
            input_tokens=prompt,
            input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
            output_tokens=completion,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
            total_tokens=prompt + completion,
        )
    return OpenAIResponse(
        id=response_id,
        object="response",
        created_at=created,
        model=model,
        status=status,
        output=output,
        parallel_tool_calls=False,
        tool_choice=tool_choice,
        tools=[
            FunctionTool(
                type="function",
                name=t.name,
                description=t.description,
                parameters=t.parameters,
                strict=False,
            )
            for t in tools
        ],
        usage=usage,
        previous_response_id=previous,
        instructions=instructions,
    )


@router.post("/responses", responses={200: {"model": OpenAIResponse}})
async def create(body: ResponseCreateIn, request: Request, caller: Caller) -> Response:
    """A response from an endpoint model or an agent; `previous_response_id` continues."""
    services = services_of(request)
    target = await catalog.resolve(
        services.sessionmaker, services.providers, services.chat.agents, caller, body.model
    )
    previous = None
    if body.previous_response_id:
        async with services.sessionmaker() as session:
            previous = await owned_reply(
                session, caller.owner_id, _message_id(body.previous_response_id)
            )
    call = body.to_call(target)
    headers = answer_headers(request)
    if body.store is False:
        if previous is not None:
            raise BadRequest(
                "`store: false` cannot continue a stored response", field="previous_response_id"
            )
        pieces = stream_unstored(services.providers, caller, call)
        response_id = f"{RESPONSE_PREFIX}{new_id()}"
    else:
        if previous is not None:
            call = dataclasses.replace(
                call, conversation_id=previous.conversation_id, parent_message_id=previous.id
            )
        started = await start_call(services.chat, caller, call)
        note_call(request, started)
        pieces = follow_reply(started)
        response_id = f"{RESPONSE_PREFIX}{started.response_message_id}"
        headers = {**headers, CONVERSATION_HEADER: started.conversation_id}
    created = time.time()
    shape = {
        "model": body.model,
        "created": created,
        "previous": body.previous_response_id,
        "instructions": body.instructions,
        "tools": call.tools.tools if call.tools else (),
        "tool_choice": body.tool_choice.model_dump()
        if isinstance(body.tool_choice, ToolChoiceFunctionIn)
        else body.tool_choice or "auto",
    }
    if body.stream:
        begun = await begin(pieces)
        finish_audit(request, status=200, outcome=AuditOutcome.ACCEPTED)
        return StreamingResponse(
            _events(begun, response_id, shape),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
    end = await whole_reply(pieces)
    if end.error is not None:
        raise reply_failure(end)
    answer = _response(
        response_id,
        status="completed",
        text=end.text,
        end=end,
        **shape,  # type: ignore[arg-type]
    )
    finish_audit(request, status=200, outcome=AuditOutcome.ACCEPTED)
    return JSONResponse(answer.model_dump(mode="json"), headers=headers)


async def _events(
    pieces: AsyncIterator[ReplyPiece], response_id: str, shape: dict[str, Any]
) -> AsyncIterator[bytes]:
    """The typed events of a streamed response, each with its sequence number."""
    sequence = 0
    item_id = f"msg_{_message_id(response_id)}"

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal sequence
        data = {"type": kind, "sequence_number": sequence, **fields}
        sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    def response(status: str, text: str | None, end: ReplyEnd | None = None) -> dict[str, Any]:
        built = _response(response_id, status=status, text=text, end=end, **shape)
        return built.model_dump(mode="json")

    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}

    def message_added() -> Iterator[bytes]:
        item = _message_item(response_id, "", "in_progress").model_dump(mode="json")
        yield event("response.output_item.added", output_index=0, item=item)
        yield event("response.content_part.added", part=part, **where)

    yield event("response.created", response=response("in_progress", None))
    yield event("response.in_progress", response=response("in_progress", None))
    # The message item opens with its first text: a reply that is only calls of the
    # caller's tools has none.
    text: list[str] = []
    async for piece in pieces:
        if isinstance(piece, ToolStep):
            continue  # not asked for here
        if isinstance(piece, str):
            if not text:
                for frame in message_added():
                    yield frame
            text.append(piece)
            yield event("response.output_text.delta", delta=piece, logprobs=[], **where)
            continue
        if piece.error is not None:
            yield event(
                "error",
                code=piece.error,
                message=f"the reply failed ({piece.error}): {piece.detail or 'no detail'}",
                param=None,
            )
            return
        whole = piece.text if piece.text is not None else "".join(text)
        done = response("completed", whole, piece)
        has_message = bool(done["output"]) and done["output"][0]["type"] == "message"
        if has_message:
            if not text:
                for frame in message_added():
                    yield frame
            yield event("response.output_text.done", text=whole, logprobs=[], **where)
            yield event("response.content_part.done", part={**part, "text": whole}, **where)
            yield event("response.output_item.done", output_index=0, item=done["output"][0])
        first_call = 1 if has_message else 0
        for index, item in enumerate(done["output"][first_call:], start=first_call):
            at = {"item_id": item["id"], "output_index": index}
            added = {**item, "arguments": "", "status": "in_progress"}
            yield event("response.output_item.added", output_index=index, item=added)
            yield event("response.function_call_arguments.delta", delta=item["arguments"], **at)
            yield event(
                "response.function_call_arguments.done",
                arguments=item["arguments"],
                name=item["name"],
                **at,
            )
            yield event("response.output_item.done", output_index=index, item=item)
        yield event("response.completed", response=done)
        return


@router.get("/responses/{response_id}", responses={200: {"model": OpenAIResponse}})
async def get(
    response_id: Annotated[str, Path(max_length=200)], request: Request, caller: Caller
) -> Response:
    """A stored response of the caller's owner, as it stands."""
    services = services_of(request)
    async with services.sessionmaker() as session:
        reply = await owned_reply(session, caller.owner_id, _message_id(response_id))
    finish_audit(request, status=200, outcome=AuditOutcome.ACCEPTED)
    end = ReplyEnd(
        reply.finish_reason or "stop",
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        tool_calls=unanswered_calls(reply.content or []),
    )
    answer = _response(
        response_id,
        model=reply.model or "",
        created=reply.created_at.timestamp(),
        status=_STATUSES.get(reply.status, "completed"),
        text=reply.text,
        end=end,
    )
    return JSONResponse(answer.model_dump(mode="json"), headers=answer_headers(request))
