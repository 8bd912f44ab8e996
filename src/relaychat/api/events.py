"""Server-sent event streams: every event of the user, or of one conversation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path
from fastapi.responses import StreamingResponse

from relaychat.api.deps import ServicesDep, StreamUser
from relaychat.domain.conversations import get_owned_conversation
from relaychat.metrics import OPEN_STREAMS
from relaychat.realtime import SSE_HEADERS, Subscription, event_stream

router = APIRouter(tags=["events"])

_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An SSE stream"}
}


@router.get("/api/events", response_class=StreamingResponse, responses=_SSE_DOC)
async def user_events(
    user: StreamUser,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """Every event of every conversation you own; resume with `Last-Event-ID`."""
    subscription = services.bus.subscribe(user.id, last_event_id=last_event_id)
    return _stream(services.settings.sse_heartbeat_seconds, subscription)


@router.get(
    "/api/convos/{conversation_id}/events", response_class=StreamingResponse, responses=_SSE_DOC
)
async def conversation_events(
    user: StreamUser,
    services: ServicesDep,
    conversation_id: Annotated[str, Path(max_length=128)],
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """The events of one conversation you own."""
    async with services.sessionmaker() as session:
        await get_owned_conversation(session, user.id, conversation_id)
    subscription = services.bus.subscribe(
        user.id, conversation_id=conversation_id, last_event_id=last_event_id
    )
    return _stream(services.settings.sse_heartbeat_seconds, subscription)


async def _counted(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    OPEN_STREAMS.inc()
    try:
        async for chunk in stream:
            yield chunk
    finally:
        OPEN_STREAMS.dec()


def _stream(heartbeat: float, subscription: Subscription) -> StreamingResponse:
    return StreamingResponse(
        _counted(event_stream(subscription, heartbeat_interval=heartbeat)),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
