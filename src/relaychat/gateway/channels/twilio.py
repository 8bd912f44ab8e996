"""Twilio's webhooks: inbound SMS/WhatsApp messages, and status callbacks of our replies.

An inbound message is authenticated by `X-Twilio-Signature` alone (the `twilio` package's
`RequestValidator`, over the URL Twilio requested and every form field), mapped onto an
external message, and accepted through the same pipeline, permissions and owner
resolution as an API key's (`relaychat.domain.intake.external.accept`). The answer is an empty
TwiML `<Response/>` at once; the reply goes out later through the outbox (Messages API).
Twilio's retries of a message carry the same `MessageSid`, which is the idempotency key:
a retry replays the empty answer and stores nothing. Each sender has one thread per
channel, which must belong to the user the channel names (see domain.telephony.channel_threads).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import (  # type: ignore[import-untyped]
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from relaychat.domain.access import idempotency
from relaychat.domain.access.keys import KeyPermissions, KeyPrincipal
from relaychat.domain.accounts import users
from relaychat.domain.accounts.phones import normalize_phone
from relaychat.domain.intake import external
from relaychat.domain.telephony import channel_replies, channel_threads, channels
from relaychat.errors import (
    AppError,
    BadRequest,
    ConversationExists,
    ErrorCode,
    Forbidden,
    UnsupportedMediaType,
)
from relaychat.gateway.refusals import refuse_unauthenticated
from relaychat.gateway.request_audit import RequestAudit, finish
from relaychat.metrics import ERRORS
from relaychat.services import Services
from relaychat.storage.models import Channel

# A Twilio form: repeated fields are kept (the signature covers every value).
Form = ImmutableMultiDict[str, str]
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM = "application/x-www-form-urlencoded"
# Twilio sends at most 10 media per message; more fields than a message has are refused.
MAX_MEDIA = 10
MAX_FIELDS = 200
_MESSAGE_SID = re.compile(r"^(SM|MM|SS)[0-9a-fA-F]{32}$")


class TwilioSignatureInvalid(Forbidden):
    code = ErrorCode.TWILIO_SIGNATURE_INVALID
    title = "X-Twilio-Signature is missing or does not match"


class TwilioAccountMismatch(Forbidden):
    code = ErrorCode.TWILIO_ACCOUNT_MISMATCH
    title = "The request is for another Twilio account"


class TwilioFormInvalid(BadRequest):
    code = ErrorCode.TWILIO_FORM_INVALID
    title = "The form is not a Twilio message"


class TwilioMediaType(UnsupportedMediaType):
    title = "Twilio webhooks are application/x-www-form-urlencoded"


def twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="text/xml")


async def handle_inbound(request: Request, services: Services, channel_id: str) -> Response:
    """Serve one inbound message; every outcome leaves an audit row."""
    audit = RequestAudit.of(request)
    try:
        form = await _authenticate(request, services, channel_id, audit, channels.webhook_url)
        assert audit.channel is not None
        if not audit.channel.enabled:
            raise channels.ChannelDisabled("this channel does not take messages now")
        return await _accept(services, audit.channel, form, audit)
    except AppError as exc:
        return await _refused(request, services, audit, exc)


async def handle_status(
    request: Request, services: Services, channel_id: str, message_id: str
) -> Response:
    """Record a status callback (`MessageStatus`, `ErrorCode`) of one part of a reply."""
    audit = RequestAudit.of(request)
    try:
        form = await _authenticate(
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
        return await _refused(request, services, audit, exc)
    return Response(status_code=204)


async def _authenticate(
    request: Request,
    services: Services,
    channel_id: str,
    audit: RequestAudit,
    url_of: Callable[[Channel], str],
) -> Form:
    """The request's form, once its signature proved it comes from the channel's account."""
    async with services.sessionmaker() as session:
        channel = await channels.load_twilio_channel(session, channel_id)
    audit.channel = channel
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM:
        raise TwilioMediaType()
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise TwilioFormInvalid("the body is not a UTF-8 form of at most 200 fields") from exc
    form = ImmutableMultiDict(pairs)
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        raise TwilioSignatureInvalid("X-Twilio-Signature is missing")
    token = channels.channel_token(channel, services.secrets)
    url = channels.signed_url(url_of(channel), request.scope.get("query_string", b"").decode())
    # Twilio names the algorithm when a webhook setting signs with HMAC-SHA256; the
    # validator compares in constant time, with and without the default port.
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    if not RequestValidator(token).validate(url, form, signature, algorithm):
        raise TwilioSignatureInvalid(f"the signature does not match {url}")
    account = form.get("AccountSid")
    if account and account != (channel.config or {}).get("account_sid"):
        raise TwilioAccountMismatch()
    return form


def _field(form: Form, name: str, *, required: bool = False, limit: int = 200) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise TwilioFormInvalid(f"{name} is required", field=name)
    return text[:limit]


def _message(form: Form, channel: Channel, region: str) -> external.ExternalMessage:
    """The Twilio form as an external message, its metadata holding what a reply needs."""
    sid = _field(form, "MessageSid") or _field(form, "SmsMessageSid", required=True)
    if not _MESSAGE_SID.fullmatch(sid):
        raise TwilioFormInvalid("MessageSid is not a Twilio message sid", field="MessageSid")
    sender = _field(form, "From", required=True)
    recipient = _field(form, "To", required=True)
    source = "whatsapp" if sender.lower().startswith("whatsapp:") else "sms"
    phone = normalize_phone(sender, region)
    body = form.get("Body")
    text = body if isinstance(body, str) else ""
    try:
        count = min(int(_field(form, "NumMedia") or 0), MAX_MEDIA)
    except ValueError as exc:
        raise TwilioFormInvalid("NumMedia is not a number", field="NumMedia") from exc
    media = [
        {"url": _field(form, f"MediaUrl{i}", limit=2000), "content_type": ctype}
        for i in range(count)
        if _field(form, f"MediaUrl{i}")
        for ctype in [_field(form, f"MediaContentType{i}", limit=100)]
    ]
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text.strip() else []
    for item in media:
        if item["content_type"].startswith("image/"):
            content.append({"type": "image_url", "image_url": {"url": item["url"]}})
        else:  # a model can't take audio or a PDF as a part; it can be told of it
            content.append(
                {"type": "text", "text": f"[attachment {item['content_type']}: {item['url']}]"}
            )
    if not content:
        raise TwilioFormInvalid("the message has neither Body nor media", field="Body")
    twilio = {
        "message_sid": sid,
        "account_sid": _field(form, "AccountSid"),
        "from": sender,
        "to": recipient,
        "num_media": count,
        "media": media,
        "num_segments": _field(form, "NumSegments") or None,
        "profile_name": _field(form, "ProfileName") or None,
        "wa_id": _field(form, "WaId") or None,
    }
    metadata = {
        "source": source,
        "phoneNumber": phone,
        "channel": channels.TWILIO,
        "channel_id": channel.id,
        "twilio": {k: v for k, v in twilio.items() if v is not None},
    }
    return external.ExternalMessage(content=content, metadata=metadata)


def _principal(channel: Channel) -> KeyPrincipal:
    """The channel as a key: it may open its senders' threads and nothing else."""
    return KeyPrincipal(
        key_id=None,
        key_ref=channels.channel_ref(channel.id),
        name=f"twilio:{channel.name}",
        owner_id=channel.owner_user_id,
        # Routing by phone acts for whichever user the number belongs to.
        system=channel.owner_user_id is None,
        permissions=KeyPermissions(
            allowed_conversations=channel_threads.thread_patterns(channel.id),
            can_create_conversations=True,
            can_respond=True,
            respond_default=True,
            default_endpoint=channel.endpoint,
            default_model=channel.model,
            default_agent_id=channel.agent_id,
            can_name_user=channel.owner_user_id is not None,
        ),
        channel_tag=channel_threads.channel_tag(channel.id),
    )


async def _accept(
    services: Services, channel: Channel, form: Form, audit: RequestAudit
) -> Response:
    message = _message(form, channel, services.settings.phone_default_region)
    twilio = message.metadata["twilio"]
    conversation_id = channel_threads.thread_id(
        channel.id, message.metadata["source"], message.metadata["phoneNumber"]
    )
    audit.conversation_id = conversation_id
    key_ref = channels.channel_ref(channel.id)
    fingerprint = idempotency.request_fingerprint(
        conversation_id, [twilio["from"], twilio["to"], form.get("Body"), twilio["media"]]
    )
    sid = twilio["message_sid"]
    replay = await idempotency.begin(services.sessionmaker, key_ref, sid, fingerprint)
    if replay is not None:
        finish(services, audit, status=200, outcome="replayed")
        response = twiml()
        response.headers["Idempotent-Replayed"] = "true"
        return response
    try:
        accepted = await _accept_once(services, channel, conversation_id, message, audit)
    except BaseException:
        await idempotency.release(services.sessionmaker, key_ref, sid)
        raise
    audit.user_id = accepted.owner_id
    audit.strategy = audit.strategy or accepted.strategy
    audit.message_id = accepted.sent.message.id
    await idempotency.finish(
        services.sessionmaker,
        key_ref,
        sid,
        200,
        {"message_id": accepted.sent.message.id, "conversation_id": conversation_id},
    )
    finish(services, audit, status=200, outcome="accepted")
    return twiml()


async def _accept_once(
    services: Services,
    channel: Channel,
    conversation_id: str,
    message: external.ExternalMessage,
    audit: RequestAudit,
) -> external.Accepted:
    principal = _principal(channel)
    twilio = message.metadata["twilio"]

    async def attempt(session: AsyncSession) -> external.Accepted:
        sender = await channels.inbound_sender(
            session,
            channel,
            conversation_id,
            message.metadata["phoneNumber"],
            twilio.get("profile_name"),
        )
        if sender.provisioned:
            audit.strategy = "provisioned"
        return await external.accept(
            session,
            services.chat,
            principal,
            sender.caller,
            conversation_id,
            external.ExternalMessage(
                content=message.content,
                metadata=message.metadata,
                user=sender.user,
                respond=sender.respond,
            ),
            phone_region=services.settings.phone_default_region,
        )

    try:
        # The same sender's previous message may have created the thread (or the user) a
        # moment ago: the second attempt joins it.
        return await external.accept_joining(
            services.sessionmaker, attempt, retry_on=(users.UserRaced,)
        )
    except (ConversationExists, users.UserRaced):
        raise ConversationExists("try again") from None


async def _refused(
    request: Request, services: Services, audit: RequestAudit, exc: AppError
) -> Response:
    if isinstance(exc, channels.ChannelNotFound | TwilioSignatureInvalid):
        # Nothing proved the caller is Twilio: limited and audited like a bad API key.
        refusal = await refuse_unauthenticated(services, audit.client, exc)
        exc, audit.recorded = refusal.error, refusal.audited
    if audit.recorded:  # unlike an API key's, an unwritten refusal is not counted either
        finish(services, audit, status=exc.status, outcome="refused", reason=exc.code)
    ERRORS.labels(exc.code).inc()
    return JSONResponse(
        exc.to_problem(request.url.path),
        status_code=exc.status,
        headers=exc.headers,
        media_type="application/problem+json",
    )
