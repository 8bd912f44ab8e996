"""POST /v1/chat/completions: a stored call (a conversation turn answered by the generation
runner; see domain/openai_compat/calls.py for why) or, with `store: false`, the provider's
answer passed through. Streamed as OpenAI's `data:` chunks ending in `[DONE]`, or whole.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
)
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import (
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from openai.types.chat.chat_completion_message_function_tool_call import Function
from openai.types.completion_usage import CompletionUsage

from relaychat.domain.ids import new_id
from relaychat.domain.openai_compat import catalog
from relaychat.domain.openai_compat.calls import (
    ReplyEnd,
    ReplyPiece,
    ToolStep,
    begin,
    follow_reply,
    start_call,
    stream_unstored,
    whole_reply,
)
from relaychat.errors import AppError, BadRequest, ErrorCode
from relaychat.llm.errors import ProviderError
from relaychat.openai_api.callers import (
    Caller,
    answer_headers,
    finish_audit,
    note_call,
    services_of,
)
from relaychat.openai_api.errors import error_body
from relaychat.openai_api.schemas import ChatCompletionIn
from relaychat.realtime.sse import SSE_HEADERS
from relaychat.statuses import AuditOutcome

router = APIRouter(tags=["openai"])

CONVERSATION_HEADER = "x-relaychat-conversation-id"
_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})


class ReplyFailed(ProviderError):
    """The reply failed or was cut short; the caller gets a 502 naming the reason."""


def _finish_reason(end: ReplyEnd) -> Any:
    return end.finish_reason if end.finish_reason in _FINISH_REASONS else "stop"


def _usage(end: ReplyEnd) -> CompletionUsage | None:
    if end.prompt_tokens is None and end.completion_tokens is None:
        return None
    prompt, completion = end.prompt_tokens or 0, end.completion_tokens or 0
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _arguments(call: dict[str, Any]) -> str:
    arguments = call["arguments"]
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _tool_call(call: dict[str, Any]) -> ChatCompletionMessageFunctionToolCall:
    return ChatCompletionMessageFunctionToolCall(
        id=call["id"],
        type="function",
        function=Function(name=call["name"], arguments=_arguments(call)),
    )


def _step(step: ToolStep) -> dict[str, Any]:
    """A tool the agent ran, as the `tool_steps` extension shows it: the call as OpenAI
    writes one (`arguments` a JSON string), with its output."""
    return {
        "id": step.id,
        "name": step.name,
        "arguments": _arguments({"arguments": step.arguments}),
        "output": step.output,
        "is_error": step.is_error,
    }


def reply_failure(end: ReplyEnd) -> AppError:
    """The error a failed reply answers: ours (500) when the call could not be stored, else
    the reply's (502, naming the reason)."""
    if end.error == ErrorCode.INTERNAL_ERROR:
        return AppError(end.detail)
    return ReplyFailed(f"the reply failed ({end.error}): {end.detail or 'no detail'}")


@router.post(
    "/chat/completions",
    responses={200: {"model": ChatCompletion, "description": "The reply, or its chunks (SSE)"}},
)
async def create(
    body: ChatCompletionIn,
    request: Request,
    caller: Caller,
    conversation_header: Annotated[
        str | None, Header(alias=CONVERSATION_HEADER, max_length=128)
    ] = None,
) -> Response:
    """A chat completion from an endpoint model (`<endpoint>/<model>`) or an agent."""
    body.check_supported()
    services = services_of(request)
    target = await catalog.resolve(
        services.sessionmaker, services.providers, services.chat.agents, caller, body.model
    )
    call = body.to_call(target, body.conversation_id or conversation_header)
    headers = answer_headers(request)
    if body.stores:
        started = await start_call(services.chat, caller, call)
        note_call(request, started)
        # Streamed, the steps come as they run; whole, the reply's end has them all.
        steps = body.include_tool_steps and bool(body.stream)
        pieces = follow_reply(started, steps=steps)
        completion_id = f"chatcmpl-{started.response_message_id}"
        headers = {**headers, CONVERSATION_HEADER: started.conversation_id}
    else:
        if body.conversation_id or conversation_header:
            raise BadRequest("`store: false` cannot continue a conversation", field="store")
        pieces = stream_unstored(services.providers, caller, call)
        completion_id = f"chatcmpl-{new_id()}"
    created = int(time.time())
    if body.stream:
        begun = await begin(pieces)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        rendering = _Chunks(completion_id, created, body.model, include_usage)
        finish_audit(request, status=200, outcome=AuditOutcome.ACCEPTED)
        chunks = rendering.of(begun)
        return StreamingResponse(
            chunks, media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
        )
    end = await whole_reply(pieces)
    if end.error is not None:
        raise reply_failure(end)
    # relaychat's extension, only when asked: the SDK's models keep unknown fields.
    extension = (
        {"tool_steps": [_step(s) for s in end.tool_steps]} if body.include_tool_steps else {}
    )
    completion = ChatCompletion(
        id=completion_id,
        object="chat.completion",
        created=created,
        model=body.model,
        choices=[
            Choice(
                index=0,
                message=ChatCompletionMessage(
                    role="assistant",
                    content=end.text or None,
                    tool_calls=[_tool_call(call) for call in end.tool_calls] or None,
                    **extension,
                ),
                finish_reason=_finish_reason(end),
            )
        ],
        usage=_usage(end),
    )
    finish_audit(request, status=200, outcome=AuditOutcome.ACCEPTED)
    return JSONResponse(completion.model_dump(mode="json"), headers=headers)


# A placeholder content and its JSON, found in a rendered chunk (only the id, ours, comes
# before the content).
_SLOT = "\x00"
_SLOT_JSON = json.dumps(_SLOT).encode()


def _sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


class _Chunks:
    """A reply as OpenAI's chunks: the role first, the text (and the tool steps when asked
    for) as it comes, the finish reason, the usage when asked for, `[DONE]`; a failure as
    an `error` event instead. What does not depend on the reply is rendered when this is
    made, while the upstream is asked for its first piece."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool):
        self.completion_id, self.created, self.model = completion_id, created, model
        self.include_usage = include_usage
        self.role = self.chunk(ChoiceDelta(role="assistant", content=""))
        # Text chunks differ only in their content: rendered once through the models
        # around a placeholder, then filled in with the JSON of each piece (building and
        # dumping the models costs ~50 µs a token, the bulk of a stream's CPU when many
        # run at once).
        self.head, _, self.tail = self.chunk(ChoiceDelta(content=_SLOT)).partition(_SLOT_JSON)

    def chunk(self, delta: ChoiceDelta, finish: Any = None) -> bytes:
        return self.event(choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)])

    def event(self, **fields: Any) -> bytes:
        """A chunk of this completion with `fields` (its choices, its usage)."""
        return _sse(
            ChatCompletionChunk(
                id=self.completion_id,
                object="chat.completion.chunk",
                created=self.created,
                model=self.model,
                **fields,
            ).model_dump(mode="json", exclude_unset=True)
        )

    async def of(self, pieces: AsyncIterator[ReplyPiece]) -> AsyncIterator[bytes]:
        chunk, head, tail = self.chunk, self.head, self.tail  # read for every token
        yield self.role
        async for piece in pieces:
            if isinstance(piece, str):
                yield b"".join((head, json.dumps(piece).encode(), tail))
                continue
            if isinstance(piece, ToolStep):  # only there when the caller asked for them
                yield chunk(ChoiceDelta(tool_steps=[_step(piece)]))
                continue
            if piece.error is not None:
                failure = reply_failure(piece)
                yield _sse(error_body(failure.detail, status=failure.status, code=failure.code))
                return
            if piece.tool_calls:
                yield chunk(
                    ChoiceDelta(
                        tool_calls=[
                            ChoiceDeltaToolCall(
                                index=index,
                                id=call["id"],
                                type="function",
                                function=ChoiceDeltaToolCallFunction(
                                    name=call["name"], arguments=_arguments(call)
                                ),
                            )
                            for index, call in enumerate(piece.tool_calls)
                        ]
                    )
                )
            yield chunk(ChoiceDelta(), _finish_reason(piece))
            usage = _usage(piece)
            if self.include_usage and usage is not None:
                yield self.event(choices=[], usage=usage)
            yield _sse("[DONE]")
            return
