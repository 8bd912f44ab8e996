"""The fake upstream's Anthropic Messages wire format."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from relaychat.devtools.fake_config import (
    DirectiveError,
    FailureKind,
    FakeConfig,
    FakeInput,
    Plan,
    apply_directive,
    split_directive,
)
from relaychat.devtools.fake_runtime import (
    FakeState,
    Frame,
    FrameScript,
    answer,
    body_digest,
    retry_after_headers,
)

_ERRORS: dict[str, tuple[int, str, str]] = {
    "auth": (401, "authentication_error", "invalid x-api-key"),
    "bad_request": (400, "invalid_request_error", "The request is invalid."),
    "rate_limit": (429, "rate_limit_error", "Number of requests has exceeded your rate limit."),
    "server_error": (500, "api_error", "Internal server error"),
    # Anthropic says "overloaded" with its own status code.
    "unavailable": (529, "overloaded_error", "Overloaded"),
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def error_response(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in Anthropic's body shape."""
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}
    return JSONResponse(body, status_code=status, headers=headers)


def failure_response(failure: FailureKind, config: FakeConfig) -> JSONResponse:
    """The HTTP error that acts out `failure`."""
    status, kind, message = _ERRORS[failure]
    headers = retry_after_headers(config) if failure == "rate_limit" else None
    return error_response(status, kind, message, headers)


def models_body(config: FakeConfig) -> dict[str, Any]:
    """`GET /v1/models` in Anthropic's shape."""
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in config.models
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        ]
    return []


def read_input(body: dict[str, Any]) -> tuple[FakeInput, dict[str, Any] | None]:
    """The neutral view of a messages body; user turns holding only tool results don't count."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    user_text, turn = "", 0
    for message in messages:
        texts = _texts(message.get("content"))
        if message.get("role") == "user" and texts:
            user_text, turn = "\n\n".join(texts), 0
        elif message.get("role") == "assistant":
            turn += 1
    overrides, user_text = split_directive(user_text)
    prompt = [*_texts(body.get("system")), *(t for m in messages for t in _texts(m.get("content")))]
    max_tokens = body.get("max_tokens")
    return (
        FakeInput(
            model=str(body.get("model") or ""),
            user_text=user_text,
            turn=turn,
            prompt_text=" ".join(prompt),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        ),
        overrides,
    )


def _event(kind: str, payload: dict[str, Any]) -> str:
    data = json.dumps({"type": kind, **payload}, separators=(",", ":"))
    return f"event: {kind}\ndata: {data}\n\n"


def _input(plan: Plan) -> int:
    # Anthropic's format has no message without usage: a server that counts nothing says 0.
    return plan.prompt_tokens if plan.usage else 0


def _output(plan: Plan) -> int:
    return plan.completion_tokens if plan.usage else 0


def frame_script(plan: Plan, model: str, message_id: str) -> FrameScript:
    """The events of a streamed message, exactly as Anthropic sends them."""
    head = [
        _event(
            "message_start",
            {
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": _input(plan),
                        "output_tokens": 1 if plan.usage else 0,
                    },
                }
            },
        )
    ]
    body: list[Frame] = []
    index = 0
    if plan.tokens or not plan.calls:
        block = {"type": "text", "text": ""}
        head.append(_event("content_block_start", {"index": 0, "content_block": block}))
        head.append(_event("ping", {}))
        body.extend(
            Frame(
                _event(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": token}},
                ),
                token=True,
            )
            for token in plan.tokens
        )
        body.append(Frame(_event("content_block_stop", {"index": 0})))
        index = 1
    else:
        head.append(_event("ping", {}))
    for call in plan.calls:
        tool_block = {
            "type": "tool_use",
            "id": call.call_id("toolu", plan.turn),
            "name": call.name,
            "input": {},
        }
        start = {"index": index, "content_block": tool_block}
        body.append(Frame(_event("content_block_start", start)))
        body.extend(
            Frame(
                _event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "input_json_delta", "partial_json": part}},
                ),
                token=True,
            )
            for part in call.fragments
        )
        body.append(Frame(_event("content_block_stop", {"index": index})))
        index += 1
    tail = [
        _event(
            "message_delta",
            {
                "delta": {"stop_reason": _STOP_REASONS[plan.finish], "stop_sequence": None},
                "usage": {"output_tokens": _output(plan)},
            },
        ),
        _event("message_stop", {}),
    ]
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    return FrameScript(
        head=head,
        body=body,
        tail=tail,
        error_frame=f"event: error\ndata: {json.dumps(error)}\n\n",
        garbage_frame="event: content_block_delta\ndata: this is not json\n\n",
    )


def message_body(plan: Plan, model: str, message_id: str) -> dict[str, Any]:
    """A non-streamed message."""
    content: list[dict[str, Any]] = []
    if plan.tokens or not plan.calls:
        content.append({"type": "text", "text": plan.text})
    content.extend(
        {
            "type": "tool_use",
            "id": call.call_id("toolu", plan.turn),
            "name": call.name,
            "input": json.loads(call.arguments),
        }
        for call in plan.calls
    )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_REASONS[plan.finish],
        "stop_sequence": None,
        "usage": {"input_tokens": _input(plan), "output_tokens": _output(plan)},
    }


def router(state: FakeState) -> APIRouter:
    """Routes of the Anthropic format, bound to one server's state."""
    routes = APIRouter()

    @routes.post("/v1/messages")
    async def messages(request: Request) -> Response:
        return await _respond(request, state)

    return routes


async def _respond(request: Request, state: FakeState) -> Response:
    body = await state.read(request)
    if not state.authorized(request):
        return failure_response("auth", state.config)
    if not isinstance(body, dict):
        return error_response(400, "invalid_request_error", "The body is not a JSON object.")
    if not isinstance(body.get("max_tokens"), int):
        return error_response(400, "invalid_request_error", "max_tokens: Field required")
    try:
        request_input, overrides = read_input(body)
        config = apply_directive(state.config, overrides)
    except DirectiveError as exc:
        return error_response(400, "invalid_request_error", str(exc))
    message_id = f"msg_fake{body_digest(body, 24)}"
    model = request_input.model
    return await answer(
        request,
        state,
        config,
        body,
        request_input,
        streaming=bool(body.get("stream")),
        script=lambda plan: frame_script(plan, model, message_id),
        whole=lambda plan: message_body(plan, model, message_id),
        failure_response=failure_response,
        error_event="unavailable",
    )
