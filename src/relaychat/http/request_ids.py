"""Every request gets an id, answered in `X-Request-Id` and carried by every log line written
while serving it; and one access line per request, naming the route's template.

The id a client sends is taken only from a trusted proxy (uvicorn's `FORWARDED_ALLOW_IPS`,
the same list that decides whether `X-Forwarded-For` is believed): anyone else could put
another request's id on their own to muddle an operator's search.

The access line gives the path template (`/api/messages/{conversation_id}`), never the raw
path: the raw path holds conversation ids, and phone numbers in `sms-+1…` ids.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from relaychat import logs

access = logging.getLogger("relaychat.access")

HEADER = b"x-request-id"
# Set by what answers before routing (the gateway's hot path, the event streams).
ROUTE_TEMPLATE = "relaychat.route_template"
# A proxy's id is kept only when it looks like one: no spaces, quotes or control characters
# to break a log line, and bounded.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


class RequestIds:
    """Outermost ASGI middleware: the id, the log context, the access line."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: list[str] | str) -> None:
        self.app = app
        # uvicorn's own notion of a trusted peer (exact addresses, networks or "*").
        # (Its app parameter is typed with uvicorn's own ASGI types; any ASGI app does.)
        self._trusted = ProxyHeadersMiddleware(cast(Any, app), trusted_proxies).trusted_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._given(scope) or uuid.uuid4().hex
        header = request_id.encode()
        root_path = scope.get("root_path", "")
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, header)]
            await send(message)

        token = logs.begin(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access.isEnabledFor(logging.INFO):
                duration = round((time.perf_counter() - started) * 1000, 1)
                path = _template(scope, root_path)
                access.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    path,
                    status,
                    duration,
                    extra={
                        "method": scope["method"],
                        "path": path,
                        "status": status,
                        "duration_ms": duration,
                    },
                )
            # Left set on purpose when an exception escapes: the 500 handler outside this
            # middleware runs in this context and puts the id into its problem+json.
            if status != 500:
                logs.end(token)

    def _given(self, scope: Scope) -> str | None:
        client = scope.get("client")
        if client is None or client[0] not in self._trusted:
            return None
        for name, value in scope["headers"]:
            if name == HEADER:
                text = value.decode("latin-1")
                return text if _ACCEPTED.fullmatch(text) else None
        return None


def _template(scope: Scope, root_path: str) -> str:
    marked = scope.get(ROUTE_TEMPLATE)
    if isinstance(marked, str):
        return marked
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        # Matched no route: the raw path could be anything a client typed.
        return "-"
    # Inside a mount (/v1) the route's path is relative to it.
    mounted = scope.get("root_path", "")[len(root_path) :]
    return f"{mounted}{template}"
