"""POST /v1/responses and GET /v1/responses/{id}: the subset of OpenAI's Responses API that
SDKs use (text input or message items, `instructions`, `previous_response_id`, `store`,
`stream` with the typed events), on the same calls as chat completions.

A response is a stored reply: its id is `resp_` and the reply message's id, so
`previous_response_id` continues the conversation from that reply (a branch when it is not
the latest), and GET reads the reply back as long as its conversation exists.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types.responses import (
    Response as OpenAIResponse,
)
from openai.types.responses import (
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.ids import new_id
from relaychat.domain.openai_compat import catalog
from relaychat.domain.openai_compat.callers import UnsupportedParameter
from relaychat.domain.openai_compat.calls import (
    Call,
    CallTurn,
    ReplyEnd,
    ReplyPiece,
    ToolStep,
    follow_reply,
    owned_reply,
    start_call,
    stream_unstored,
    whole_reply,
)
from relaychat.errors import BadRequest
from relaychat.openai_api.callers import (
    Caller,
    answer_headers,
    finish_audit,
    note_call,
    services_of,
)
from relaychat.openai_api.chat_completions import CONVERSATION_HEADER, ReplyFailed
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


class ResponseCreateIn(BaseModel):
    """POST /v1/responses."""

    model_config = _Loose

    model: str = Field(min_length=1, max_length=300)
    input: str | list[InputMessage] = Field(min_length=1)
    instructions: str | None = Field(None, max_length=100_000)
    previous_response_id: str | None = Field(None, max_length=200)
    store: bool | None = None
    stream: bool | None = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_output_tokens: int | None = Field(None, gt=0)
    tools: list[dict[str, Any]] | None = None

    def to_call(self, target: catalog.Target) -> Call:
        if self.tools:
            raise UnsupportedParameter("tools are not available on /v1/responses", field="tools")
        items = (
            [InputMessage(role="user", content=self.input)]
            if isinstance(self.input, str)
            else self.input
        )
        system = [self.instructions] if self.instructions else []
        turns: list[CallTurn] = []
        for item in items:
            text = (
                item.content
                if isinstance(item.content, str)
                else "".join(p.text for p in item.content)
            )
            if item.role in {"system", "developer"}:
                system.append(text)
            elif text.strip():
                turns.append(CallTurn(item.role, [{"type": "text", "text": text}]))  # type: ignore[arg-type]
        if not turns or turns[-1].role != "user":
            raise BadRequest("the input must end with the user's message", field="input")
        return Call(
            target=target,
            turns=turns,
            system="\n\n".join(system) or None,
            parameters={
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_tokens": self.max_output_tokens,
            },
        )


def _message_id(response_id: str) -> str:
    return response_id.removeprefix(RESPONSE_PREFIX)


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
) -> OpenAIResponse:
    output = (
        [
            ResponseOutputMessage(
                id=f"msg_{_message_id(response_id)}",
                type="message",
                role="assistant",
                status="completed" if status == "completed" else "in_progress",
                content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
            )
        ]
        if text is not None
        else []
    )
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
        tool_choice="auto",
        tools=[],
        usage=usage,
        previous_response_id=previous,
        instructions=instructions,
    )


@router.post("/responses", responses={200: {"model": OpenAIResponse}})
async def create(body: ResponseCreateIn, request: Request, caller: Caller) -> Response:
    """A response from an endpoint model or an agent; `previous_response_id` continues."""
    services = services_of(request)
    async with services.sessionmaker() as session:
        target = await catalog.resolve(
            session, services.providers, services.chat.agents, caller, body.model
        )
        previous = (
            await owned_reply(session, caller.owner_id, _message_id(body.previous_response_id))
            if body.previous_response_id
            else None
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
        pieces = follow_reply(services.bus, started)
        response_id = f"{RESPONSE_PREFIX}{started.response_message_id}"
        headers = {**headers, CONVERSATION_HEADER: started.conversation_id}
    created = time.time()
    shape = {
        "model": body.model,
        "created": created,
        "previous": body.previous_response_id,
        "instructions": body.instructions,
    }
    if body.stream:
        finish_audit(request, status=200, outcome=AuditOutcome.ACCEPTED)
        return StreamingResponse(
            _events(pieces, response_id, shape),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
    end = await whole_reply(pieces)
    if end.error is not None:
        raise ReplyFailed(f"the reply failed ({end.error}): {end.detail or 'no detail'}")
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
    yield event("response.created", response=response("in_progress", None))
    yield event("response.in_progress", response=response("in_progress", None))
    item = response("in_progress", "")["output"][0]
    yield event("response.output_item.added", output_index=0, item=item)
    part = {"type": "output_text", "text": "", "annotations": []}
    yield event("response.content_part.added", part=part, **where)
    text: list[str] = []
    async for piece in pieces:
        if isinstance(piece, ToolStep):
            continue  # not asked for here
        if not isinstance(piece, ReplyEnd):
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
        yield event("response.output_text.done", text=whole, logprobs=[], **where)
        yield event("response.content_part.done", part={**part, "text": whole}, **where)
        done = response("completed", whole, piece)
        yield event("response.output_item.done", output_index=0, item=done["output"][0])
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
