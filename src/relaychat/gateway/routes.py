"""Routes only external systems call (people's and systems' shared path is in api/messages)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status

from relaychat.api.deps import ApiKeyDoc, ServicesDep
from relaychat.gateway import external
from relaychat.gateway.schemas import ThreadedMessageIn

router = APIRouter(prefix="/api/external", tags=["external"])


@router.post("/messages", status_code=status.HTTP_202_ACCEPTED)
async def threaded_message(
    body: ThreadedMessageIn, request: Request, services: ServicesDep, _key: ApiKeyDoc
) -> Any:
    """Post by sender instead of conversation id: the same `metadata.source` and
    `metadata.phoneNumber` (or `metadata.sender`) always land in the same conversation,
    e.g. `sms-+15551234567`."""
    return await external.handle(request, services, body, None)
