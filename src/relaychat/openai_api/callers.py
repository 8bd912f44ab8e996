"""Who calls /v1: `Authorization: Bearer` with an API key (`rck_…`, the key's permissions,
rate limit and audit apply as on the gateway) or a person's access token.

An access token is a JWT (three dot-separated parts); anything else is taken for a key. A
key's request leaves one audit row (refusals included, within the unauthenticated limit of
gateway/refusals.py); a person's calls are theirs and are not audited, as in the UI.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from relaychat.domain.access import keys
from relaychat.domain.openai_compat.callers import ApiCaller
from relaychat.domain.openai_compat.calls import StartedCall
from relaychat.errors import Unauthenticated
from relaychat.gateway.external import limit_headers, rate_limit
from relaychat.gateway.refusals import refuse_unauthenticated
from relaychat.gateway.request_audit import RequestAudit
from relaychat.http.deps import access_claims
from relaychat.services import Services

# Where a request keeps what its audit row and answer need, on `request.state`.
_AUDIT = "openai_audit"
_LIMIT_HEADERS = "openai_limit_headers"


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated(
            "send `Authorization: Bearer <key>`: an API key (`rck_…`) or an access token"
        )
    return value.strip()


async def get_caller(request: Request) -> ApiCaller:
    """The caller of this request, counted against its key's rate limit."""
    services = services_of(request)
    audit = RequestAudit.of(request)
    setattr(request.state, _AUDIT, audit)
    try:
        credential = _bearer(request)
        if credential.count(".") == 2:  # a JWT: a person's access token
            claims = await access_claims(services, credential)
            setattr(request.state, _AUDIT, None)
            return ApiCaller(claims.user_id)
        audit.principal = await keys.authenticate(None, services.keys, credential)
    except (Unauthenticated, keys.KeyRefused) as exc:
        if isinstance(exc, keys.KeyRefused):
            audit.refused_key = exc
        refusal = await refuse_unauthenticated(services, audit.client, exc)
        audit.recorded = refusal.audited
        raise refusal.error from None
    caller = ApiCaller.of_key(audit.principal)
    limit = await rate_limit(services, audit.principal)
    setattr(request.state, _LIMIT_HEADERS, limit_headers(limit))
    return caller


Caller = Annotated[ApiCaller, Depends(get_caller)]


def answer_headers(request: Request) -> dict[str, str]:
    """The rate-limit headers of the request's key, for its answer."""
    headers: dict[str, str] = getattr(request.state, _LIMIT_HEADERS, {})
    return headers


def audit_of(request: Request) -> RequestAudit | None:
    """The request's audit row in the making (None: a person's call, or already written)."""
    audit: RequestAudit | None = getattr(request.state, _AUDIT, None)
    return audit


def note_call(request: Request, started: StartedCall) -> None:
    """Name the stored call's conversation, message and owner in the request's audit row."""
    audit = audit_of(request)
    if audit is not None:
        audit.conversation_id = started.conversation_id
        audit.message_id = started.request_message_id
        audit.user_id = started.owner_id


def finish_audit(request: Request, *, status: int, outcome: str, reason: str | None = None) -> None:
    """Queue the request's audit row (once; none for a person's call)."""
    audit = audit_of(request)
    if audit is None:
        return
    setattr(request.state, _AUDIT, None)
    if audit.recorded:
        services_of(request).audit.add_values(
            audit.values(status=status, outcome=outcome, reason=reason)
        )
