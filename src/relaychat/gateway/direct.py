"""External messages served in front of FastAPI's routing: `POST /api/messages/{id}` with
`x-api-key` and a valid `role: "external"` body.

This is the gateway's hottest request (SMS bursts, bots, automations). Through FastAPI it
also paid for matching the path against every route, the route's request/response
wrappers, its exit stacks and dependency resolver, and a second parse of the body: about a
fifth of its CPU (bench.gateway --profile). Here the body `StorableInput` already parsed
and checked is validated with the same model the route uses, and handed to the same
`external.handle`, which does everything the request needs (key, limits, idempotency,
accept, audit) and writes its own answer, refusals included.

Anything else goes on to the route in api/messages.py: no `x-api-key`, a body that is not
JSON or not a valid external message (the route then answers with FastAPI's usual 422), a
person's message. So both ways give the same answers, and OpenAPI still documents the path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from relaychat.gateway import external
from relaychat.gateway.schemas import ExternalMessageIn
from relaychat.http.middleware import JSON_BODY
from relaychat.http.request_ids import ROUTE_TEMPLATE

if TYPE_CHECKING:
    from relaychat.services import Services

_PATH = re.compile(r"/api/messages/([^/]+)")
_BODY = TypeAdapter(ExternalMessageIn)


class ExternalMessages:
    """ASGI middleware; install inside `StorableInput`, whose parsed body it reads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        conversation_id = _conversation_id(scope)
        body = _external_body(scope) if conversation_id is not None else None
        if conversation_id is None or body is None:
            await self.app(scope, receive, send)
            return
        services: Services = scope["app"].state.services
        scope[ROUTE_TEMPLATE] = "/api/messages/{conversation_id}"
        request = Request(scope, receive)
        response = await external.handle(request, services, body, conversation_id)
        await response(scope, receive, send)


def _conversation_id(scope: Scope) -> str | None:
    """The conversation of a machine's `POST /api/messages/{id}`, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    match = _PATH.fullmatch(path)
    if match is None:
        return None
    # Only with `x-api-key`: a bearer API key, or a person's token, takes the route.
    if not any(name == b"x-api-key" for name, _ in scope["headers"]):
        return None
    return match.group(1)


def _external_body(scope: Scope) -> ExternalMessageIn | None:
    """The body as the route would read it, or None for the route to answer."""
    value: Any = scope.get(JSON_BODY)
    if not isinstance(value, dict) or value.get("role") != "external":
        return None
    try:
        # FastAPI validates a parsed body the same way (validate_python, not validate_json).
        return _BODY.validate_python(value)
    except ValidationError:
        return None
