"""Twilio's status callbacks: the delivery status of each part of a reply we sent."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from relaychat.domain.telephony import channel_replies, channels
from relaychat.errors import AppError
from relaychat.gateway.channels.twilio.webhook import TwilioFormInvalid, authenticate, refused
from relaychat.gateway.request_audit import RequestAudit
from relaychat.services import Services


async def handle_status(
    request: Request, services: Services, channel_id: str, message_id: str
) -> Response:
    """Record a status callback (`MessageStatus`, `ErrorCode`) of one part of a reply."""
    audit = RequestAudit.of(request)
    try:
        form = await authenticate(
            request,
            services,
            channel_id,
            audit,
            lambda channel: channels.status_callback_url(channel, message_id),
        )
        assert audit.channel is not None
        sid = form.get("MessageSid") or form.get("SmsSid")
        status = form.get("MessageStatus") or form.get("SmsStatus")
        if not isinstance(sid, str) or not isinstance(status, str) or not status:
            raise TwilioFormInvalid("MessageSid and MessageStatus are required")
        error_code = form.get("ErrorCode")
        async with services.sessionmaker() as session:
            await channel_replies.record_status(
                session,
                audit.channel.id,
                message_id[:36],
                sid=sid[:64],
                status=status[:32],
                error_code=error_code[:16] if isinstance(error_code, str) and error_code else None,
            )
    except AppError as exc:
        return await refused(request, services, audit, exc)
    return Response(status_code=204)
