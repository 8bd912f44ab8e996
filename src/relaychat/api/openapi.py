"""/openapi.json as served: every error documented as the problem+json it is."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

from relaychat.http.problems import PROBLEM_JSON

_REF = "#/components/schemas/Problem"

# What each error status means on any route; a route documents those that can happen to it.
_ERRORS = {
    401: "Not authenticated (`unauthenticated`, `invalid_token`, `invalid_api_key`, …)",
    403: "Authenticated, but not allowed (`forbidden`, `permission_denied`, …)",
    404: "Nothing with this id that you may see (`*_not_found`)",
    409: "Conflicts with what exists (`conversation_exists`, `idempotency_in_flight`, …)",
    413: "Request body too large (`payload_too_large`)",
    415: "Body not sent as JSON (`unsupported_media_type`)",
    422: "Invalid request (`validation_error`, `malformed_json`, …); `errors` names the fields",
    429: "Rate limited (`rate_limited`); see `Retry-After`",
}
_WITHOUT_BODY = (401, 403, 404, 422, 429)
_WITH_BODY = tuple(_ERRORS)
# Schemas FastAPI adds for its own 422 shape, which relaychat never sends.
_FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details with relaychat's stable `code` (extra members may follow)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    field: str | None = None
    errors: list[FieldError] | None = None


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": _REF}}}}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace FastAPI's 422 with problem+json and add the other errors to each operation."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_ERRORS:
        components.pop(name, None)
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            statuses = _WITH_BODY if "requestBody" in operation else _WITHOUT_BODY
            for status in statuses:
                responses[str(status)] = _problem(_ERRORS[status])
            responses["default"] = _problem("Any other error, e.g. 500 or 503")
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the documented schema from `app.openapi()` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
