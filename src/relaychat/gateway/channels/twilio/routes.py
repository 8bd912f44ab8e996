"""Twilio's webhooks: form bodies read raw (the signature covers every field), authenticated
by X-Twilio-Signature alone.

Under `/api/channels/twilio/`, beside people's channel routes (`api/channels.py`): those
take one segment after `/api/channels/`, these two or more, so neither can match the other.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from relaychat.gateway.channels.twilio.inbound import handle_inbound
from relaychat.gateway.channels.twilio.status import handle_status
from relaychat.http.deps import ServicesDep

router = APIRouter(prefix="/api/channels/twilio", tags=["channels"])

ChannelId = Annotated[str, Path(max_length=64)]


@router.post("/{channel_id}", response_class=Response)
async def twilio_inbound(
    channel_id: ChannelId, request: Request, services: ServicesDep
) -> Response:
    """Twilio's inbound SMS/WhatsApp webhook: an empty TwiML `<Response/>` at once; the reply
    goes out through the Messages API when it is done."""
    return await handle_inbound(request, services, channel_id)


@router.post("/{channel_id}/status/{message_id}", response_class=Response)
async def twilio_status(
    channel_id: ChannelId,
    message_id: Annotated[str, Path(max_length=64)],
    request: Request,
    services: ServicesDep,
) -> Response:
    """Twilio's status callback for a reply's parts (`MessageStatus`, `ErrorCode`)."""
    return await handle_status(request, services, channel_id, message_id)
