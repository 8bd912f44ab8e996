"""What both Twilio webhooks share: a signed form read and checked, and a refusal's answer.

A request is authenticated by `X-Twilio-Signature` alone (the `twilio` package's
`RequestValidator`, over the URL Twilio requested and every form field) with the auth
token of the channel its URL names.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import (  # type: ignore[import-untyped]
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from relaychat.domain.telephony import channels
from relaychat.errors import AppError, BadRequest, ErrorCode, Forbidden, UnsupportedMediaType
from relaychat.gateway.refusals import refuse_unauthenticated
from relaychat.gateway.request_audit import RequestAudit, finish
from relaychat.metrics import ERRORS
from relaychat.services import Services
from relaychat.storage.models import Channel

# A Twilio form: repeated fields are kept (the signature covers every value).
Form = ImmutableMultiDict[str, str]
FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 200


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


async def authenticate(
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


async def refused(
    request: Request, services: Services, audit: RequestAudit, exc: AppError
) -> Response:
    """The problem answered to a refused webhook, audited and counted."""
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
