"""Render every error as application/problem+json with a stable `code`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from relaychat.errors import AppError, MalformedJson, ValidationFailed
from relaychat.metrics import ERRORS

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
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


def _field_name(loc: tuple[Any, ...]) -> str:
    # ("body", "content", 0, "text") -> "content[0].text"; the "body"/"query" head says where.
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in {"body", "query", "path"} else []
    if loc and loc[0] == "body" and parts and parts[0] in _UNION_TAGS:
        parts = parts[1:]
    name = ""
    for part in parts or [str(p) for p in loc]:
        name += f"[{part}]" if part.isdigit() else (f".{part}" if name else part)
    return name or "body"


def validation_error(exc: RequestValidationError) -> AppError:
    """Turn FastAPI's validation error into MalformedJson or ValidationFailed naming fields."""
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return MalformedJson("request body is not valid JSON", field="body")
    fields = [
        {"field": _field_name(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in errors
    ]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    first = fields[0]["field"] if fields else "body"
    return ValidationFailed(detail or "invalid request", field=first, errors=fields)


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
        error = AppError(str(exc.detail), headers=dict(exc.headers or {}))
        # The class attributes are per type; a plain HTTP error sets them per instance.
        error.code = _HTTP_CODES.get(exc.status_code, "http_error")  # type: ignore[misc]
        error.status = exc.status_code  # type: ignore[misc]
        error.title = str(exc.detail)  # type: ignore[misc]
        return problem_response(error, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(AppError("internal error"), request)
