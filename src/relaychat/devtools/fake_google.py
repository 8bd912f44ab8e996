"""The fake upstream's Google Gemini wire format (`generateContent`, `streamGenerateContent`)."""

from __future__ import annotations

import base64
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
    list_models,
)

# Gemini answers a bad key with 400 INVALID_ARGUMENT and a reason, not with 401.
_ERRORS: dict[str, tuple[int, str, str]] = {
    "auth": (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
    "bad_request": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "rate_limit": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted."),
    "server_error": (500, "INTERNAL", "An internal error has occurred."),
    "unavailable": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
}
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}


def error_body(failure: FailureKind, config: FakeConfig) -> dict[str, Any]:
    """An error object in Google's shape, with the details the real API adds."""
    status, kind, message = _ERRORS[failure]
    error: dict[str, Any] = {"code": status, "message": message, "status": kind}
    if failure == "auth":
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ]
    elif failure == "rate_limit":
        delay = f"{config.retry_after_ms / 1000:.3f}s"
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
        ]
    return {"error": error}


def failure_response(failure: FailureKind, config: FakeConfig) -> JSONResponse:
    """The HTTP error that acts out `failure`."""
    body = error_body(failure, config)
    return JSONResponse(body, status_code=body["error"]["code"])


def models_body(config: FakeConfig) -> dict[str, Any]:
    """`GET /v1beta/models` in Google's shape."""
    return {
        "models": [
            {
                "name": f"models/{m}",
                "displayName": m,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for m in config.models
        ]
    }


def _texts(content: Any) -> list[str]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [str(p["text"]) for p in parts or [] if isinstance(p, dict) and "text" in p]


def read_input(body: dict[str, Any], model: str) -> tuple[FakeInput, dict[str, Any] | None]:
    """The neutral view of a generateContent body; function responses don't count as user text."""
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    user_text, turn = "", 0
    for content in contents:
        texts = _texts(content)
        if content.get("role", "user") == "user" and texts:
            user_text, turn = "\n\n".join(texts), 0
        elif content.get("role") == "model":
            turn += 1
    overrides, user_text = split_directive(user_text)
    prompt = [*_texts(body.get("systemInstruction")), *(t for c in contents for t in _texts(c))]
    limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
    request_input = FakeInput(
        model=model,
        user_text=user_text,
        turn=turn,
        prompt_text=" ".join(prompt),
        max_tokens=limit if isinstance(limit, int) else None,
    )
    return request_input, overrides


def _call_part(plan: Plan, ordinal: int) -> dict[str, Any]:
    call = plan.calls[ordinal]
    function_call: dict[str, Any] = {"name": call.name, "args": json.loads(call.arguments)}
    if call.id:
        function_call["id"] = call.id
    # Gemini 3 signs function calls; the signature must come back with the call.
    signature = base64.b64encode(f"sig-{plan.turn}-{ordinal}".encode()).decode()
    return {"functionCall": function_call, "thoughtSignature": signature}


def _usage(plan: Plan, final: bool) -> dict[str, int]:
    usage = {"promptTokenCount": plan.prompt_tokens}
    if final:
        usage["candidatesTokenCount"] = plan.completion_tokens
    usage["totalTokenCount"] = plan.prompt_tokens + (plan.completion_tokens if final else 0)
    return usage


def frame_script(plan: Plan, model: str, response_id: str) -> FrameScript:
    """The chunks of a streamed answer; function calls arrive whole, as Gemini sends them."""

    def chunk(parts: list[dict[str, Any]], finish: str | None = None) -> str:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        payload: dict[str, Any] = {"candidates": [candidate]}
        if plan.usage:
            payload["usageMetadata"] = _usage(plan, final=finish is not None)
        payload.update(modelVersion=model, responseId=response_id)
        return f"data: {json.dumps(payload, separators=(',', ':'))}\r\n\r\n"

    body = [Frame(chunk([{"text": token}]), token=True) for token in plan.tokens]
    body.extend(Frame(chunk([_call_part(plan, i)]), token=True) for i in range(len(plan.calls)))
    error = error_body("unavailable", FakeConfig())
    return FrameScript(
        head=[],
        body=body,
        tail=[chunk([{"text": ""}], _FINISH[plan.finish])],
        error_frame=f"data: {json.dumps(error)}\r\n\r\n",
        garbage_frame="data: this is not json\r\n\r\n",
    )


def response_body(plan: Plan, model: str, response_id: str) -> dict[str, Any]:
    """A non-streamed answer."""
    parts: list[dict[str, Any]] = [{"text": plan.text}] if plan.tokens else []
    parts.extend(_call_part(plan, i) for i in range(len(plan.calls)))
    candidate = {
        "content": {"parts": parts, "role": "model"},
        "finishReason": _FINISH[plan.finish],
        "index": 0,
    }
    body: dict[str, Any] = {"candidates": [candidate]}
    if plan.usage:
        body["usageMetadata"] = _usage(plan, final=True)
    body.update(modelVersion=model, responseId=response_id)
    return body


def router(state: FakeState) -> APIRouter:
    """Routes of the Gemini format under /v1 and /v1beta, bound to one server's state.

    `GET /v1/models` is shared with the other formats and dispatched by `create_fake_llm_app`.
    """
    routes = APIRouter()

    async def stream(request: Request, model: str) -> Response:
        return await _respond(request, state, model, streaming=True)

    async def generate(request: Request, model: str) -> Response:
        return await _respond(request, state, model, streaming=False)

    async def models(request: Request) -> JSONResponse:
        return list_models(request, state, failure_response, models_body)

    for version in ("v1", "v1beta"):
        routes.add_api_route(
            f"/{version}/models/{{model}}:streamGenerateContent", stream, methods=["POST"]
        )
        routes.add_api_route(
            f"/{version}/models/{{model}}:generateContent", generate, methods=["POST"]
        )
    routes.add_api_route("/v1beta/models", models, methods=["GET"])
    return routes


async def _respond(request: Request, state: FakeState, model: str, *, streaming: bool) -> Response:
    body = await state.read(request)
    if not state.authorized(request):
        return failure_response("auth", state.config)
    if not isinstance(body, dict):
        return failure_response("bad_request", state.config)
    try:
        request_input, overrides = read_input(body, model)
        config = apply_directive(state.config, overrides)
    except DirectiveError as exc:
        error = {"error": {"code": 400, "message": str(exc), "status": "INVALID_ARGUMENT"}}
        return JSONResponse(error, status_code=400)
    response_id = body_digest(body, 20)
    return await answer(
        request,
        state,
        config,
        body,
        request_input,
        streaming=streaming,
        script=lambda plan: frame_script(plan, model, response_id),
        whole=lambda plan: response_body(plan, model, response_id),
        failure_response=failure_response,
        error_event="unavailable",
    )
