"""The fake upstream's OpenAI chat-completions wire format (also Azure's deployment paths)."""

from __future__ import annotations

import json
import time
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
    HTTP_FAILURES,
    FakeState,
    Frame,
    FrameScript,
    answer,
    body_digest,
    retry_after_headers,
)

_ERRORS: dict[str, tuple[str, str, str | None]] = {
    "auth": ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    "bad_request": ("The request is invalid.", "invalid_request_error", None),
    "rate_limit": ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    "server_error": (
        "The server had an error while processing your request.",
        "server_error",
        None,
    ),
    "unavailable": ("The engine is currently overloaded.", "server_error", None),
}


def error_response(
    status: int, message: str, kind: str, code: str | None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in OpenAI's body shape."""
    return JSONResponse(_error_body(message, kind, code), status_code=status, headers=headers)


def _error_body(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def failure_response(failure: FailureKind, config: FakeConfig) -> JSONResponse:
    """The HTTP error that acts out `failure`."""
    message, kind, code = _ERRORS[failure]
    headers = retry_after_headers(config) if failure == "rate_limit" else None
    return error_response(HTTP_FAILURES[failure], message, kind, code, headers)


def models_body(config: FakeConfig) -> dict[str, Any]:
    """`GET /v1/models` in OpenAI's shape."""
    data = [
        {"id": m, "object": "model", "created": 1700000000, "owned_by": "relaychat-fake"}
        for m in config.models
    ]
    return {"object": "list", "data": data}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def read_input(body: dict[str, Any], model: str) -> tuple[FakeInput, dict[str, Any] | None]:
    """The neutral view of a chat-completions body, and its `!fake` directive."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    user_text, turn = "", 0
    for message in messages:
        if message.get("role") == "user":
            user_text, turn = _text(message.get("content")), 0
        elif message.get("role") == "assistant":
            turn += 1
    overrides, user_text = split_directive(user_text)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    return (
        FakeInput(
            model=model,
            user_text=user_text,
            turn=turn,
            prompt_text=" ".join(_text(m.get("content")) for m in messages),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        ),
        overrides,
    )


def _frame(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def frame_script(plan: Plan, model: str, completion_id: str, include_usage: bool) -> FrameScript:
    """The chunks of a streamed completion, exactly as OpenAI sends them."""
    # A server that counts nothing ignores the option altogether (no `usage: null` either).
    include_usage = include_usage and plan.usage
    created = int(time.time())

    def payload(**fields: Any) -> str:
        return _frame(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                **fields,
            }
        )

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if include_usage:
            return payload(choices=[choice], usage=None)
        return payload(choices=[choice])

    body = [Frame(chunk({"content": token}), token=True) for token in plan.tokens]
    for call in plan.calls:
        opening = {
            "index": call.ordinal,
            "id": call.call_id("call", plan.turn),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        body.append(Frame(chunk({"tool_calls": [opening]})))
        body.extend(
            Frame(
                chunk({"tool_calls": [{"index": call.ordinal, "function": {"arguments": part}}]}),
                token=True,
            )
            for part in call.fragments
        )
    tail = [chunk({}, plan.finish)]
    if include_usage:
        tail.append(payload(choices=[], usage=_usage(plan)))
    tail.append("data: [DONE]\n\n")
    return FrameScript(
        head=[chunk({"role": "assistant", "content": ""})],
        body=body,
        tail=tail,
        error_frame=_frame(_error_body(*_ERRORS["server_error"])),
        garbage_frame="data: this is not json\n\n",
    )


def completion_body(plan: Plan, model: str, completion_id: str) -> dict[str, Any]:
    """A non-streamed completion."""
    message: dict[str, Any] = {"role": "assistant", "content": plan.text or None, "refusal": None}
    if plan.calls:
        message["tool_calls"] = [
            {
                "id": call.call_id("call", plan.turn),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in plan.calls
        ]
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish}
        ],
    }
    if plan.usage:
        body["usage"] = _usage(plan)
    return body


def _usage(plan: Plan) -> dict[str, int]:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
    }


def router(state: FakeState) -> APIRouter:
    """Routes of the OpenAI format, bound to one server's state."""
    routes = APIRouter()

    @routes.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await _complete(request, state, deployment=None)

    @routes.post("/openai/deployments/{deployment}/chat/completions")
    async def azure_chat_completions(request: Request, deployment: str) -> Response:
        return await _complete(request, state, deployment=deployment)

    return routes


async def _complete(request: Request, state: FakeState, *, deployment: str | None) -> Response:
    body = await state.read(request)
    if not isinstance(body, dict):
        return error_response(400, "The body is not a JSON object.", "invalid_request_error", None)
    if not state.authorized(request):
        return failure_response("auth", state.config)
    model = deployment or str(body.get("model") or "")
    try:
        request_input, overrides = read_input(body, model)
        config = apply_directive(state.config, overrides)
    except DirectiveError as exc:
        return error_response(400, str(exc), "invalid_request_error", "fake_directive")
    completion_id = f"chatcmpl-fake{body_digest(body, 16)}"
    options = body.get("stream_options") or {}
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    return await answer(
        request,
        state,
        config,
        body,
        request_input,
        streaming=bool(body.get("stream")),
        script=lambda plan: frame_script(plan, model, completion_id, include_usage),
        whole=lambda plan: completion_body(plan, model, completion_id),
        failure_response=failure_response,
        error_event="server_error",
    )
