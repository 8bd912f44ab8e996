"""Event streams served in front of FastAPI: `GET /api/events` and `/api/convos/{id}/events`.

An open stream mostly waits, and what it holds while waiting is its cost: thousands per
worker. Through FastAPI each one kept the frames of every middleware and exception
wrapper, three exit stacks, and a StreamingResponse task group alive, about 30 KiB. This
middleware answers a well-formed, authenticated stream request itself, with raw ASGI
calls (`relaychat.realtime.sse.stream_events`), before any of that is entered.

Anything else — no or bad credentials, a conversation that is not the user's, an
over-long parameter, an unexpected failure — goes on to the routes in api/events.py,
which check the same things with the usual dependencies and answer with the usual
problem+json (and also document both paths in OpenAPI). The checks here reuse those
dependencies' functions, so both ways agree on who may stream what.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from relaychat.domain.messaging.conversations import get_owned_conversation
from relaychat.errors import AppError
from relaychat.http.deps import ACCESS_COOKIE, bearer, get_stream_user
from relaychat.http.request_ids import ROUTE_TEMPLATE
from relaychat.realtime.sse import MEDIA_TYPE, SSE_HEADERS, SSE_RAW_HEADERS, stream_events

if TYPE_CHECKING:
    from relaychat.realtime.bus import Subscription
    from relaychat.realtime.open_streams import OpenStreams
    from relaychat.services import Services

logger = logging.getLogger(__name__)

# Limits the routes declare too (api/events.py): longer values are theirs to refuse.
MAX_CONVERSATION_ID = 128
MAX_EVENT_ID = 64

_PATH = re.compile(r"/api/(?:events|convos/([^/]+)/events)")


class EventStreams:
    """ASGI middleware serving event streams; install with `app.add_middleware(EventStreams)`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        subscription = None
        if scope["type"] == "http" and scope["method"] == "GET":
            subscription = await _subscribe(scope)
        if subscription is None:
            await self.app(scope, receive, send)
            return
        services = _services(scope)
        scope[ROUTE_TEMPLATE] = "/api/events"
        await serve_events(
            subscription, receive, send, services.settings.sse_heartbeat_seconds, services.streams
        )


class EventStreamResponse(Response):
    """The same stream as a response, for the routes (reached when the middleware is not)."""

    media_type = MEDIA_TYPE

    def __init__(
        self, subscription: Subscription, heartbeat_interval: float, streams: OpenStreams
    ) -> None:
        # Not Response.__init__: without a body, no Content-Length is set (as a
        # StreamingResponse does it).
        self.status_code = 200
        self.background = None
        self.subscription = subscription
        self.heartbeat_interval = heartbeat_interval
        self.streams = streams
        self.init_headers(SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_events(
            self.subscription,
            receive,
            send,
            self.heartbeat_interval,
            self.streams,
            headers=self.raw_headers,
        )


async def serve_events(
    subscription: Subscription,
    receive: Receive,
    send: Send,
    heartbeat_interval: float,
    streams: OpenStreams,
    *,
    headers: Sequence[tuple[bytes, bytes]] = SSE_RAW_HEADERS,
) -> None:
    """Stream `subscription` as the response, counted among the open streams."""
    with streams.counted(subscription.user_id):
        await stream_events(
            subscription, receive, send, heartbeat_interval=heartbeat_interval, headers=headers
        )


async def _subscribe(scope: Scope) -> Subscription | None:
    """The subscription a stream request asks for; None when the routes should answer.

    Its own coroutine so that nothing it looks at (the user, a database session) stays
    referenced while the stream is open.
    """
    match = _PATH.fullmatch(_route_path(scope))
    if match is None:
        return None
    conversation_id: str | None = match[1]
    last_event_id = _header(scope, b"last-event-id")
    if len(conversation_id or "") > MAX_CONVERSATION_ID or len(last_event_id or "") > MAX_EVENT_ID:
        return None
    services = _services(scope)
    request = Request(scope)
    try:
        # Exactly the route's authentication: header first, else the access cookie.
        user = await get_stream_user(
            services, await bearer(request), request.cookies.get(ACCESS_COOKIE)
        )
        if conversation_id is not None:
            async with services.sessionmaker() as session:
                await get_owned_conversation(session, user.id, conversation_id)
    except AppError:
        # Refused (401, 404): the route repeats the checks and renders the problem.
        return None
    except Exception:
        # Failed (the database, say): the route tries again, and answers (and logs) an
        # error the way every other route does.
        logger.debug("event stream set-up failed; leaving it to the route", exc_info=True)
        return None
    return services.bus.subscribe(
        user.id, conversation_id=conversation_id, last_event_id=last_event_id
    )


def _services(scope: Scope) -> Services:
    services: Services = scope["app"].state.services
    return services


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the root path the app is mounted at."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lowercase), as Starlette decodes it."""
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None
