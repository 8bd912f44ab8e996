"""ASGI middleware: request body size limit, and what a request may carry into storage."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relaychat.domain.limits import MAX_JSON_DEPTH, find_unstorable, text_problem
from relaychat.errors import AppError, MalformedJson, NotFound, PayloadTooLarge, ValidationFailed

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# The scope key under which `StorableInput` leaves a JSON body it parsed and accepted, so
# what runs inside it (relaychat.gateway.direct) need not parse it again.
JSON_BODY = "relaychat.json_body"

# How a refusal from these middlewares is written: (content type, body) for the error and
# the request's path. problem+json unless the path is under a prefix with an error shape of
# its own (the OpenAI-compatible API at /v1), so its callers get the same shape whether a
# request is refused here or by a route.
ErrorWriter = Callable[[AppError, str], tuple[str, bytes]]
ErrorShapes = Mapping[str, ErrorWriter]
_NO_SHAPES: ErrorShapes = MappingProxyType({})


def write_problem(error: AppError, path: str) -> tuple[str, bytes]:
    # ensure_ascii: the path may hold what cannot be encoded as UTF-8 (a lone surrogate).
    return "application/problem+json", json.dumps(error.to_problem(path)).encode()


def _writer(path: str, shapes: ErrorShapes) -> ErrorWriter:
    for prefix, writer in shapes.items():
        if path == prefix or path.startswith(f"{prefix}/"):
            return writer
    return write_problem


class BodySizeLimit:
    """Refuse bodies over `max_bytes` with 413 before the app sees a byte of them.

    The body is read up front (it is small by definition), so a chunked upload that
    lies about its size is cut off just the same as one with a large Content-Length.
    `larger` names the few paths (an import's upload) allowed a limit of their own.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        larger: Mapping[str, int] | None = None,
        error_shapes: ErrorShapes = _NO_SHAPES,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})
        self.error_shapes = error_shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(scope, send, limit)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        await self.app(scope, replaying(body, receive), send)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        error = PayloadTooLarge(f"request body exceeds {limit} bytes", limit=limit)
        await send_problem(scope, send, error, close=True, shapes=self.error_shapes)


async def send_problem(
    scope: Scope,
    send: Send,
    error: AppError,
    *,
    close: bool = False,
    shapes: ErrorShapes = _NO_SHAPES,
) -> None:
    """Answer with `error` (problem+json, or the shape `shapes` gives the path), from
    middleware that runs before the app."""
    path = scope.get("path", "")
    content_type, payload = _writer(path, shapes)(error, path)
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(payload)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _media_type(scope: Scope) -> str:
    """The Content-Type's media type, lower case, without parameters (RFC 9110 8.3.1)."""
    value: bytes
    for name, value in scope["headers"]:
        if name == b"content-type":
            # Split by hand: email.message's parser cost a tenth of a gateway request.
            return value.partition(b";")[0].strip().lower().decode("latin-1")
    return ""


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _refused_params(pairs: list[tuple[str, str]]) -> AppError | None:
    for name, value in pairs:
        reason = text_problem(name) or text_problem(value)
        if reason:
            return ValidationFailed(f"{name}: {reason}", field=name)
    return None


def _parse_json(body: bytes) -> Any:
    """The JSON body's value, or the AppError (returned, not raised) why it cannot be
    accepted: not UTF-8, not JSON, too deep, unstorable text."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return MalformedJson(f"request body is not UTF-8 (byte {exc.start})", field="body")
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        return MalformedJson(
            f"request body is not valid JSON: {exc.msg} at {exc.pos}", field="body"
        )
    except RecursionError:
        return MalformedJson(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", field="body")
    refusal = find_unstorable(value)
    if refusal is None:
        return value
    if refusal.too_deep:
        return MalformedJson(f"JSON {refusal.reason}", field=refusal.field)
    return ValidationFailed(
        f"{refusal.field}: {refusal.reason}",
        field=refusal.field,
        errors=[{"field": refusal.field, "message": refusal.reason}],
    )


class StorableInput:
    """Refuse, before any route runs, what no route could store or both backends agree on.

    A NUL in a path (no id holds one) is 404; a NUL or lone surrogate in a query parameter,
    a form field or anywhere in a JSON body is 422 naming the field; a JSON body that is not
    UTF-8, not JSON or nested deeper than MAX_JSON_DEPTH is 422 `malformed_json`. SQLite
    would store what PostgreSQL refuses, so this keeps both answering the same.
    """

    def __init__(self, app: ASGIApp, error_shapes: ErrorShapes = _NO_SHAPES) -> None:
        self.app = app
        self.error_shapes = error_shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if text_problem(scope["path"]):
            await send_problem(
                scope, send, NotFound("no resource has this name"), shapes=self.error_shapes
            )
            return
        query = scope.get("query_string", b"")
        if query:
            refused = _refused_params(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
            if refused is not None:
                await send_problem(scope, send, refused, shapes=self.error_shapes)
                return
        media_type = _media_type(scope) if scope["method"] in _BODY_METHODS else ""
        form = media_type == "application/x-www-form-urlencoded"
        if not (form or _is_json(media_type)):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and form:
            refused = _refused_params(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
            if refused is not None:
                await send_problem(scope, send, refused, shapes=self.error_shapes)
                return
        elif body:
            value = _parse_json(body)
            if isinstance(value, AppError):
                await send_problem(scope, send, value, shapes=self.error_shapes)
                return
            scope[JSON_BODY] = value
        await self.app(scope, replaying(body, receive), send)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body a middleware already read, then the rest."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
