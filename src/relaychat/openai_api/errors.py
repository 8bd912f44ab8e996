"""Errors on /v1 in OpenAI's shape, so SDKs raise their usual exceptions.

The statuses are relaychat's own (401, 403, 404, 429 with `Retry-After`, ...), except two
that OpenAI's clients read differently: a request the schema refuses is 400, not 422, and a
key that does not authenticate (unknown, revoked, expired) is 401, not the gateway's 403,
for that is what makes an SDK raise `AuthenticationError`. `code` is relaychat's
stable code (the README's table), `param` the field at fault when one is known.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from relaychat.domain.access.keys import KeyRefused
from relaychat.errors import AppError, ErrorCode, UserDisabled
from relaychat.http.problems import validation_error
from relaychat.metrics import ERRORS
from relaychat.openai_api.callers import finish_audit
from relaychat.statuses import AuditOutcome

logger = logging.getLogger(__name__)

# OpenAI's `type` by status; the SDKs choose their exception by the status alone.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(
    message: str, *, status: int, code: str | None, param: str | None = None
) -> dict[str, Any]:
    """`{"error": {...}}` as OpenAI writes it (also inside a stream)."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if code == ErrorCode.BUDGET_EXCEEDED:
        # OpenAI's words for a spent quota, which clients look for; still a 429.
        kind = code = "insufficient_quota"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def write_error(error: AppError, path: str) -> tuple[str, bytes]:
    """A refusal by the middleware that runs before /v1's routes (a body over the size
    limit, input no route could store), in OpenAI's shape with its status."""
    param = error.fields.get("field")
    body = error_body(error.detail, status=error.status, code=error.code, param=param)
    return "application/json", json.dumps(body).encode()


def error_response(request: Request, exc: AppError, *, status: int | None = None) -> JSONResponse:
    """The response for `exc`; a key's request leaves its audit row as refused."""
    status = status or exc.status
    ERRORS.labels(exc.code).inc()
    finish_audit(request, status=status, outcome=AuditOutcome.REFUSED, reason=exc.code)
    param = exc.fields.get("field")
    return JSONResponse(
        error_body(exc.detail, status=status, code=exc.code, param=param),
        status_code=status,
        headers=exc.headers,
    )


def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """The answer to an error the /v1 application handles: an AppError, a request its
    schema refuses, or Starlette's HTTPException (a path or method without a route)."""
    if isinstance(exc, RequestValidationError):
        return error_response(request, validation_error(exc), status=400)
    if isinstance(exc, StarletteHTTPException):
        error = AppError(str(exc.detail), headers=dict(exc.headers or {}))
        code = ErrorCode.NOT_FOUND if exc.status_code == 404 else ErrorCode.HTTP_ERROR
        error.code = code  # type: ignore[misc]  # per instance, as http/problems.py does
        return error_response(request, error, status=exc.status_code)
    if not isinstance(exc, AppError):
        raise TypeError(f"not an error /v1 handles: {type(exc).__name__}")
    unauthenticated = isinstance(exc, KeyRefused) and not isinstance(exc, UserDisabled)
    return error_response(request, exc, status=401 if unauthenticated else None)


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """The answer to any other error, logged."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, AppError("internal error"))


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    return handle_error(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error of `app` (the /v1 application) in OpenAI's shape."""
    for kind in (AppError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(kind, _handle)
    app.add_exception_handler(Exception, handle_unexpected)
