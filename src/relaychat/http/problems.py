"""Render every error as application/problem+json with a stable `code`."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from relaychat import logs
from relaychat.errors import (
    AppError,
    ErrorCode,
    MalformedJson,
    UnsupportedMediaType,
    ValidationFailed,
)
from relaychat.metrics import ERRORS

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.NOT_ACCEPTABLE,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


def problem_response(error: AppError, request: Request | None = None) -> JSONResponse:
    """The problem+json response for an AppError."""
    ERRORS.labels(error.code).inc()
    return JSONResponse(
        error.to_problem(request.url.path if request else None),
        status_code=error.status,
        headers=error.headers,
        media_type=PROBLEM_JSON,
    )


# Tags of bodies that are unions chosen by a field (see api/messages.py): not part of a name.
_UNION_TAGS = frozenset({"user", "external"})
# pydantic names the member of a union it tried (`str`, `list[tagged-union[A,B]]`,
# `function-after[...]`): a type, never one of our fields.
_MEMBER_LABEL = re.compile(r"^(?:str|int|float|bool|dict|list|none|[\w-]+\[.*\])$")


def _field_name(loc: tuple[Any, ...]) -> str:
    # ("body", "user", "content", 0, "text") -> "content[0].text"; the head says where.
    parts = list(loc[1:]) if loc and loc[0] in {"body", "query", "path"} else list(loc)
    if loc and loc[0] == "body" and parts and parts[0] in _UNION_TAGS:
        parts = parts[1:]
    name = ""
    # A tagged union puts the tag it chose after its label (`tagged-union[A,B]`, `text`),
    # or after the index when it is a list's items (`list[tagged-union[A,B]]`, 0, `text`).
    tag_in = -1
    for part in parts:
        if tag_in == 0:
            tag_in = -1
            continue
        tag_in -= 1
        if isinstance(part, int):
            name += f"[{part}]"
        elif _MEMBER_LABEL.match(part):
            if "tagged-union[" in part:
                tag_in = 0 if part.startswith("tagged-union[") else 1
        else:
            name += f".{part}" if name else part
    return name or "body"


def _message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", ""))
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _fields(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """One entry per field, named as the API names it (`content[0].type`)."""
    named: dict[str, str] = {}
    for error in errors:
        name = _field_name(tuple(error.get("loc", ())))
        if error.get("type") == "union_tag_invalid":
            # The tag itself is what is wrong: name it (`'type'` in the context).
            tag = str(error.get("ctx", {}).get("discriminator", "")).strip("'")
            name = f"{name}.{tag}" if tag and name != "body" else tag or name
        named.setdefault(name, _message(error))
    # A union tried on a value of the wrong kind reports each member: when one member got
    # further (`content[0].type`), its error is the one that helps.
    deeper = {name for name in named if any(o.startswith((f"{name}[", f"{name}.")) for o in named)}
    return [{"field": k, "message": v} for k, v in named.items() if k not in deeper]


def validation_error(exc: RequestValidationError) -> AppError:
    """Turn FastAPI's validation error into MalformedJson or ValidationFailed naming fields."""
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return MalformedJson("request body is not valid JSON", field="body")
    if isinstance(exc.body, bytes | bytearray) and exc.body:
        # FastAPI hands over the raw bytes of a body that was not sent as JSON.
        return UnsupportedMediaType(
            "send the body as JSON with `Content-Type: application/json`",
            field="Content-Type",
        )
    fields = _fields(errors)
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    first = fields[0]["field"] if fields else "body"
    return ValidationFailed(detail or "invalid request", field=first, errors=fields)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    # Starlette answers 405 from the first route whose path matches, naming only its own
    # methods; GET and POST on one path are two routes, so ask every route about each method.
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def install_problem_handlers(app: FastAPI) -> None:
    """Register handlers so that no error leaves as anything but problem+json."""

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(validation_error(exc), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        error = AppError(str(exc.detail), headers=headers)
        # The class attributes are per type; a plain HTTP error sets them per instance.
        error.code = _HTTP_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)  # type: ignore[misc]
        error.status = exc.status_code  # type: ignore[misc]
        error.title = str(exc.detail)  # type: ignore[misc]
        return problem_response(error, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        route = getattr(request.scope.get("route"), "path", "-")
        logger.exception("unhandled error on %s %s", request.method, route)
        response = problem_response(AppError("internal error"), request)
        request_id = logs.current_request_id()
        if request_id is not None:
            # Answered outside RequestIds (Starlette's outermost middleware), which would
            # otherwise have added it.
            response.headers["x-request-id"] = request_id
        return response
