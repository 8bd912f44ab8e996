"""POST /api/external/messages, only external systems call it (the path shared with people
is in api/messages.py, Twilio's webhooks in channels/twilio/routes.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from relaychat.gateway import external
from relaychat.gateway.schemas import ExternalAccepted, ExternalAnswered, ThreadedMessageIn
from relaychat.http.deps import ApiKeyDoc, ServicesDep

router = APIRouter(prefix="/api/external", tags=["external"])


# The gateway writes its responses itself (refusals, replays, SSE): these models document
# them. 202 is the usual answer; `_ANSWERS` adds the other two.
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "`Prefer: wait=N`: the reply ended in time", "model": ExternalAnswered},
    201: {"description": "Stored; no reply was asked for", "model": ExternalAccepted},
}


@router.post(
    "/messages",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExternalAccepted,
    responses=_ANSWERS,
)
async def threaded_message(
    body: ThreadedMessageIn, request: Request, services: ServicesDep, _key: ApiKeyDoc
) -> Response:
    """Post by sender instead of conversation id: the same `metadata.source` and
    `metadata.phoneNumber` (or `metadata.sender`) always land in the same conversation,
    e.g. `sms-+15551234567`."""
    return await external.handle(request, services, body, None)
