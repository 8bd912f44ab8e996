"""Server-sent event streams: every event of the user, or of one conversation.

Requests these routes would stream are served before routing by
`relaychat.http.sse_app.EventStreams`, which holds far less per open connection. The
routes still answer every request it passes on (refusals, errors) and document both
paths; they stream the same way if it is not installed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path

from relaychat.domain.messaging.conversations import get_owned_conversation
from relaychat.http.deps import ServicesDep, StreamUser
from relaychat.http.sse_app import (
    MAX_EVENT_ID,
    EventStreamResponse,
    EventStreams,
)

# EventStreams is re-exported for create_app, which installs it in front of the routes.
__all__ = ["EventStreams", "conversation_events", "router", "user_events"]

router = APIRouter(tags=["events"])

_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An SSE stream"}
}


@router.get("/api/events", response_class=EventStreamResponse, status_code=200, responses=_SSE_DOC)
async def user_events(
    user: StreamUser,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(max_length=MAX_EVENT_ID)] = None,
) -> EventStreamResponse:
    """Every event of every conversation you own; resume with `Last-Event-ID`."""
    subscription = services.bus.subscribe(user.id, last_event_id=last_event_id)
    return EventStreamResponse(
        subscription, services.settings.sse_heartbeat_seconds, services.streams
    )


@router.get(
    "/api/convos/{conversation_id}/events",
    response_class=EventStreamResponse,
    status_code=200,
    responses=_SSE_DOC,
)
async def conversation_events(
    user: StreamUser,
    services: ServicesDep,
    conversation_id: Annotated[str, Path()],  # an id that cannot exist is 404
    last_event_id: Annotated[str | None, Header(max_length=MAX_EVENT_ID)] = None,
) -> EventStreamResponse:
    """The events of one conversation you own."""
    async with services.sessionmaker() as session:
        await get_owned_conversation(session, user.id, conversation_id)
    subscription = services.bus.subscribe(
        user.id, conversation_id=conversation_id, last_event_id=last_event_id
    )
    return EventStreamResponse(
        subscription, services.settings.sse_heartbeat_seconds, services.streams
    )
