"""The /v1 application: its own error handlers (OpenAI's shape; the rest of the API keeps
problem+json), mounted into the main app and sharing its state (the services).

`V1Front` (ASGI middleware of the main app) takes /v1 requests before the main app's
routing: matching a path against every route of the main API before reaching the mount
came to ~6% of a `store: false` call's CPU (py-spy, `bench.openai_api`). It hands them to
the /v1 application as the mount would, and serves `POST /v1/chat/completions` itself with
the route's own functions, without the /v1 application's middleware stack, router and
dependency solver (another tenth of the call): the body `StorableInput` already parsed is
validated with the route's model, the caller found by the route's dependency, the route's
function answers, and its errors go to the /v1 handlers. Anything the route's parameters
would refuse goes on to the route, which refuses it the usual way.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.telemetry import TelemetryConfig
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relaychat import __version__
from relaychat.errors import AppError
from relaychat.http.middleware import JSON_BODY
from relaychat.http.request_ids import ROUTE_TEMPLATE
from relaychat.openai_api import chat_completions, models, responses
from relaychat.openai_api.callers import get_caller
from relaychat.openai_api.errors import handle_error, handle_unexpected, install_error_handlers
from relaychat.openai_api.errors import write_error as write_error
from relaychat.openai_api.schemas import ChatCompletionIn

PREFIX = "/v1"
# For the parent's middleware (relaychat.http.middleware): what it refuses under /v1 before
# routing is written in OpenAI's shape too.
ERROR_SHAPES = {PREFIX: write_error}

_COMPLETIONS = "/chat/completions"
_COMPLETIONS_BODY = TypeAdapter(ChatCompletionIn)
# The route's header parameter (chat_completions.create): its name and length limit.
_CONVERSATION_HEADER = chat_completions.CONVERSATION_HEADER.encode("latin-1")
_CONVERSATION_HEADER_MAX = 128
# The route's parameters as `V1Front` passes them: a change to them must change it too.
_COMPLETIONS_PARAMETERS = ("body", "request", "caller", "conversation_header")
if tuple(inspect.signature(chat_completions.create).parameters) != _COMPLETIONS_PARAMETERS:
    raise RuntimeError("chat_completions.create changed its parameters: update V1Front")


def build_v1(telemetry: TelemetryConfig | None = None) -> FastAPI:
    """The /v1 application (`mount_v1` mounts it)."""
    v1 = FastAPI(
        title="relaychat OpenAI-compatible API",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        # The parent's: without it FastAPI looks for OpenTelemetry providers per request.
        telemetry=telemetry,
    )
    install_error_handlers(v1)
    v1.include_router(models.router)
    v1.include_router(chat_completions.router)
    v1.include_router(responses.router)
    return v1


def mount_v1(parent: FastAPI, v1: FastAPI | None = None) -> FastAPI:
    """Mount the /v1 application (built here unless given) into `parent`."""
    v1 = v1 or build_v1()
    # One state for both: the parent's lifespan puts the services there (a mounted app's
    # own lifespan never runs), and routes read them from `request.app.state`.
    v1.state = parent.state
    parent.mount(PREFIX, v1)
    return v1


class V1Front:
    """ASGI middleware of the main app, inside `StorableInput` (whose parsed body it reads):
    /v1 requests go to the /v1 application without the main app's routing."""

    def __init__(self, app: ASGIApp, v1: ASGIApp) -> None:
        self.app = app
        self.v1 = v1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        if (
            scope["type"] != "http"
            or not path.startswith(f"{PREFIX}/")
            # FastAPI's OpenTelemetry names the span after the routes it passes through:
            # when an operator turned it on, the usual way keeps that.
            or "fastapi.telemetry" in scope
        ):
            await self.app(scope, receive, send)
            return
        # What the mount would add to the scope (starlette.routing.Mount.matches), and the
        # router the main app's routing would leave there (`url_for` reads it).
        scope["app_root_path"] = scope.get("app_root_path", root_path)
        scope["root_path"] = root_path + PREFIX
        scope["endpoint"] = self.v1
        scope.setdefault("router", getattr(scope.get("app"), "router", None))
        if scope["method"] == "POST" and path == PREFIX + _COMPLETIONS:
            arguments = _completion_arguments(scope)
            if arguments is not None:
                scope[ROUTE_TEMPLATE] = PREFIX + _COMPLETIONS
                await _serve_completion(scope, receive, send, *arguments)
                return
        await self.v1(scope, receive, send)


def _completion_arguments(scope: Scope) -> tuple[ChatCompletionIn, str | None] | None:
    """The body and conversation header as the route would take them, or None when the
    route would refuse them (it then answers, with its usual 400)."""
    value: Any = scope.get(JSON_BODY)
    if not isinstance(value, dict):
        return None
    header: str | None = None
    for name, raw in scope["headers"]:
        if name == _CONVERSATION_HEADER:
            header = raw.decode("latin-1")
            break  # the first, as FastAPI takes a `str` header
    if header is not None and len(header) > _CONVERSATION_HEADER_MAX:
        return None
    try:
        # FastAPI validates a parsed body the same way (validate_python, not validate_json).
        return _COMPLETIONS_BODY.validate_python(value), header
    except ValidationError:
        return None


async def _serve_completion(
    scope: Scope, receive: Receive, send: Send, body: ChatCompletionIn, header: str | None
) -> None:
    """The route's work (its dependency, then its function) and its answer, with errors
    answered as the /v1 application's exception middlewares answer them."""
    request = Request(scope, receive)
    started = False

    async def sending(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        try:
            caller = await get_caller(request)
            response = await chat_completions.create(body, request, caller, header)
            await response(scope, receive, sending)
        except (AppError, RequestValidationError, StarletteHTTPException) as exc:
            if started:  # as starlette's exception middleware says it
                raise RuntimeError(
                    "Caught handled exception, but response already started."
                ) from exc
            await handle_error(request, exc)(scope, receive, sending)
    except Exception as exc:
        # As starlette's server error middleware: the handler always runs, its answer is
        # sent if none was, and the exception goes on for the server to log.
        answer = await handle_unexpected(request, exc)
        if not started:
            await answer(scope, receive, send)
        raise
