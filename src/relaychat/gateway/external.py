"""The external message request, end to end: key, limits, idempotency, accept, answer, audit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from relaychat import logs
from relaychat.domain.access import idempotency, keys
from relaychat.domain.intake import external
from relaychat.domain.intake.resolution import Caller, phone_from_metadata
from relaychat.domain.messaging.content import normalize_content
from relaychat.errors import AppError, ErrorCode, RateLimited, Unauthenticated
from relaychat.gateway.refusals import refuse_unauthenticated
from relaychat.gateway.request_audit import RequestAudit, finish, stored_with_message
from relaychat.gateway.schemas import (
    ExternalAccepted,
    ExternalAnswered,
    ExternalMessageIn,
    ThreadedMessageIn,
)
from relaychat.http.deps import access_claims
from relaychat.metrics import ERRORS, RATE_LIMITED
from relaychat.ratelimit import RateLimitResult
from relaychat.realtime.sse import SSE_HEADERS
from relaychat.resources import GenerationOut, MessageView
from relaychat.services import Services
from relaychat.statuses import AuditOutcome, GenerationStatus
from relaychat.storage.models import Generation, Message

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 120
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+)", re.IGNORECASE)
_FINAL_EVENTS = frozenset({"message.completed", "message.failed"})


class ApiKeyRequired(Unauthenticated):
    code = ErrorCode.API_KEY_REQUIRED
    title = "An API key is required for external messages"


def api_key_of(request: Request) -> str | None:
    """`x-api-key`, or a bearer token when no `x-api-key` is sent."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def handle(
    request: Request,
    services: Services,
    body: ExternalMessageIn | ThreadedMessageIn,
    conversation_id: str | None,
) -> Response:
    """Serve one external message; every outcome leaves an audit row."""
    audit = RequestAudit.of(request, conversation_id=conversation_id)
    logs.bind(conversation_id=conversation_id)
    limit: RateLimitResult | None = None
    try:
        audit.principal = await _authenticate(request, services, audit)
        logs.bind(key_id=audit.principal.key_ref, user_id=audit.principal.owner_id)
        limit = await rate_limit(services, audit.principal)
        response = await _accept(request, services, body, conversation_id, audit)
    except AppError as exc:
        finish(services, audit, status=exc.status, outcome=AuditOutcome.REFUSED, reason=exc.code)
        # What an operator asked "why did this SMS get no answer?" searches for.
        logger.info("external message refused: %s", exc.code)
        headers = {**exc.headers, **limit_headers(limit)}
        ERRORS.labels(exc.code).inc()
        problem = exc.to_problem(request.url.path)
        return JSONResponse(
            problem, status_code=exc.status, headers=headers, media_type="application/problem+json"
        )
    response.headers.update(limit_headers(limit))
    return response


async def _authenticate(
    request: Request, services: Services, audit: RequestAudit
) -> keys.KeyPrincipal:
    """The key's principal; a refusal counts against the client's unauthenticated limit."""
    raw_key = api_key_of(request)
    try:
        if not raw_key:
            raise ApiKeyRequired("send the key in `x-api-key` (or `Authorization: Bearer`)")
        # No session of its own: a cached or system key is checked without one.
        return await keys.authenticate(None, services.keys, raw_key)
    except (ApiKeyRequired, keys.KeyRefused) as exc:
        if isinstance(exc, keys.KeyRefused):
            audit.refused_key = exc
        refusal = await refuse_unauthenticated(services, audit.client, exc)
        audit.recorded = refusal.audited
        raise refusal.error from None


async def _accept(
    request: Request,
    services: Services,
    body: ExternalMessageIn | ThreadedMessageIn,
    conversation_id: str | None,
    audit: RequestAudit,
) -> Response:
    principal = audit.principal
    assert principal is not None
    settings = services.settings
    metadata = dict(body.metadata)
    by_sender = conversation_id is None
    if conversation_id is None:  # threaded: the sender names the conversation
        phone = phone_from_metadata(metadata, settings.phone_default_region)
        conversation_id = external.thread_id(metadata, phone)
        audit.conversation_id = conversation_id
    message = external.ExternalMessage(
        content=normalize_content(body.content),
        metadata=metadata,
        respond=body.respond,
        parent_message_id=getattr(body, "parent_message_id", None),
        user=body.user,
    )
    idem_key = request.headers.get("idempotency-key")
    if idem_key is not None:
        idempotency.check_key(idem_key)
        fingerprint = idempotency.request_fingerprint(conversation_id, body.model_dump(mode="json"))
        replay = await idempotency.begin(
            services.sessionmaker, principal.key_ref, idem_key, fingerprint
        )
        if replay is not None:
            finish(services, audit, status=replay.status_code, outcome=AuditOutcome.REPLAYED)
            return JSONResponse(
                replay.body,
                status_code=replay.status_code,
                headers={"Idempotent-Replayed": "true"},
            )
    try:
        accepted = await _accept_once(
            request, services, principal, conversation_id, message, audit, by_sender=by_sender
        )
    except BaseException:
        if idem_key is not None:
            await idempotency.release(services.sessionmaker, principal.key_ref, idem_key)
        raise
    audit.user_id = accepted.owner_id
    audit.strategy = accepted.strategy
    audit.message_id = accepted.message.message_id
    started = accepted.started
    if started is not None:
        logs.bind(generation_id=started.generation_id)  # the access line names the reply
    status = 202 if started is not None else 201
    accepted_answer = ExternalAccepted(
        message=accepted.message,
        conversation_id=accepted.conversation_id,
        response_message_id=started.response_id if started else None,
        generation_id=started.generation_id if started else None,
    )
    payload = accepted_answer.model_dump(mode="json")
    if idem_key is not None:
        await idempotency.finish(
            services.sessionmaker, principal.key_ref, idem_key, status, payload
        )
    finish(services, audit, status=status, outcome=AuditOutcome.ACCEPTED)

    if started is not None and "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            _reply_events(services, accepted, started.response_id),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    wait = _prefer_wait(request.headers.get("prefer", ""))
    if started is not None and wait is not None:
        reply = await _wait_for_reply(services, accepted, started.generation_id, wait)
        if reply is not None:
            answer = ExternalAnswered(
                **dict(accepted_answer), reply=reply[0], generation=reply[1]
            ).model_dump(mode="json")
            if idem_key is not None:
                # A retry replays this final answer, reply included, not the 202 above.
                await idempotency.finish(
                    services.sessionmaker, principal.key_ref, idem_key, 200, answer
                )
            return JSONResponse(
                answer, status_code=200, headers={"Preference-Applied": f"wait={wait}"}
            )
    return JSONResponse(payload, status_code=status)


async def _accept_once(
    request: Request,
    services: Services,
    principal: keys.KeyPrincipal,
    conversation_id: str,
    message: external.ExternalMessage,
    audit: RequestAudit,
    *,
    by_sender: bool,
) -> external.Accepted:
    caller = Caller(
        system=principal.system,
        key_owner_id=principal.owner_id,
        can_name_user=principal.permissions.can_name_user,
        token_user_id=await _token_user(request, services),
        session_user_id=await _cookie_user(request, services),
    )
    if not by_sender:
        grouped = await external.accept_grouped(
            services.sessionmaker,
            services.intake,
            services.owners,
            principal,
            caller,
            conversation_id,
            message,
            standing=services.standing,
            audit=stored_with_message(audit, status=201),
        )
        if grouped is not None:
            audit.stored = True
            return grouped
    return await external.accept_joining(
        services.sessionmaker,
        lambda session: external.accept(
            session,
            services.chat,
            principal,
            caller,
            conversation_id,
            message,
            phone_region=services.settings.phone_default_region,
            by_sender=by_sender,
        ),
    )


async def rate_limit(services: Services, principal: keys.KeyPrincipal) -> RateLimitResult | None:
    """Count a request against the key's rate limit; 429 with `Retry-After` over it."""
    rule = principal.permissions.rate_limit
    if rule is None:
        return None
    verdict = await services.limiter.hit(rule.item(), "key", principal.key_ref)
    if not verdict.allowed:
        RATE_LIMITED.labels("api_key").inc()
        raise RateLimited(
            f"at most {rule.requests} requests per {rule.window} s for this key",
            headers={"Retry-After": str(verdict.retry_after), **limit_headers(verdict)},
            retry_after=verdict.retry_after,
        )
    return verdict


def limit_headers(limit: RateLimitResult | None) -> dict[str, str]:
    """The rate-limit headers of a counted request (none without a limit)."""
    if limit is None:
        return {}
    reset = max(0, int(limit.reset_at - time.time()))
    return {
        "RateLimit-Policy": f"{limit.limit};w={limit.window_seconds}",
        "RateLimit": f"limit={limit.limit}, remaining={limit.remaining}, reset={reset}",
        "X-RateLimit-Limit": str(limit.limit),
        "X-RateLimit-Remaining": str(limit.remaining),
        "X-RateLimit-Reset": str(int(limit.reset_at)),
    }


async def _token_user(request: Request, services: Services) -> str | None:
    """A user's access token sent alongside an `x-api-key` (resolution strategy 3)."""
    if not request.headers.get("x-api-key"):
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return (await access_claims(services, token.strip())).user_id


async def _cookie_user(request: Request, services: Services) -> str | None:
    """The user of the request's session cookie (resolution strategy 4)."""
    token = request.cookies.get("relaychat_access")
    if not token:
        return None
    with contextlib.suppress(AppError):
        return (await access_claims(services, token)).user_id
    return None


def _prefer_wait(header: str) -> int | None:
    match = _PREFER_WAIT.search(header)
    return min(int(match.group(1)), MAX_WAIT_SECONDS) if match else None


async def _wait_for_reply(
    services: Services, accepted: external.Accepted, generation_id: str, seconds: int
) -> tuple[MessageView, GenerationOut] | None:
    """The finished reply and its generation, or None if it still runs after `seconds`."""
    owner = accepted.owner_id
    response_id = accepted.started.response_id if accepted.started else None
    marker = f'"message_id":"{response_id}"'.encode()
    services.runner.expect_end(generation_id)
    try:
        subscription = services.bus.subscribe(
            owner, conversation_id=accepted.conversation_id, last_event_id=accepted.event_id
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds), subscription as events:
                async for envelope in events:
                    if envelope.type in _FINAL_EVENTS and marker in envelope.frame:
                        break
    finally:
        ended = services.runner.take_end(generation_id)
    if ended is not None:  # it ended in this process: as written, not read back
        return ended
    async with services.sessionmaker() as session:
        generation = await session.get(Generation, generation_id)
        reply = await session.get(Message, response_id) if response_id else None
    if generation is None or reply is None or generation.status == GenerationStatus.RUNNING:
        return None
    return MessageView.model_validate(reply), GenerationOut.model_validate(generation)


async def _reply_events(
    services: Services, accepted: external.Accepted, response_id: str
) -> AsyncIterator[bytes]:
    """The reply's events as SSE, from its creation to its end (the sender may hang up;
    the reply goes on)."""
    subscription = services.bus.subscribe(
        accepted.owner_id,
        conversation_id=accepted.conversation_id,
        last_event_id=accepted.event_id,
    )
    marker = f'"message_id":"{response_id}"'.encode()
    async with subscription as events:
        async for envelope in events:
            if marker not in envelope.frame:
                continue
            yield envelope.frame
            if envelope.type in _FINAL_EVENTS:
                return
