"""Webhook endpoints and their events: who gets which callback, signed how.

An endpoint belongs to a user (every event of the user's conversations) or to one of the
user's API keys (only events caused by that key's messages: the message it posted, the
reply to it, the conversation it opened). Payloads follow Standard Webhooks:
`{type, timestamp, data}`, signed as `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.crypto import SecretBox, SecretUnreadable
from relaychat.domain.ids import new_id
from relaychat.domain.outbound import outbox, webhook_routes
from relaychat.errors import Conflict, ErrorCode, NotFound, ValidationFailed
from relaychat.resources import iso
from relaychat.statuses import OutboxKind, OutboxStatus
from relaychat.storage.models import ApiKey, Channel, OutboxAttempt, OutboxItem, WebhookEndpoint
from relaychat.storage.types import utcnow

EventType = Literal[
    "message.created", "message.completed", "message.failed", "conversation.created"
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)
# What each event means, for people choosing which to receive (`GET /api/webhooks/event-types`).
EVENT_DESCRIPTIONS: dict[EventType, str] = {
    "message.created": "A person's or an external message arrived.",
    "message.completed": "A reply finished; data.in_reply_to is the message it answers.",
    "message.failed": "A reply failed, was aborted or was interrupted.",
    "conversation.created": "A conversation was opened.",
}
SECRET_PREFIX = "whsec_"
MAX_ENDPOINTS_PER_USER = 50


class WebhookNotFound(NotFound):
    code = ErrorCode.WEBHOOK_NOT_FOUND
    title = "No such webhook endpoint"


class DeliveryNotFound(NotFound):
    code = ErrorCode.DELIVERY_NOT_FOUND
    title = "No such delivery"


class DeliveryInFlight(Conflict):
    code = ErrorCode.DELIVERY_IN_FLIGHT
    title = "This delivery is being attempted right now"


def new_secret() -> str:
    """A `whsec_` secret: 24 random bytes, base64, as Standard Webhooks libraries expect."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` value for one attempt."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check_events(events: Sequence[str]) -> list[str]:
    """The subscribed event types, deduplicated; unknown ones are refused."""
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise ValidationFailed(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}",
            field="events",
        )
    if not events:
        raise ValidationFailed("subscribe to at least one event type", field="events")
    return sorted(set(events))


async def create_endpoint(
    session: AsyncSession,
    box: SecretBox,
    user_id: str,
    *,
    url: str,
    events: Sequence[str],
    api_key_id: str | None = None,
    description: str | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Store an endpoint (the URL checked by the caller); returns it and its secret, once."""
    chosen = check_events(events)
    if api_key_id is not None:
        owned = await session.scalar(
            select(ApiKey.id).where(ApiKey.id == api_key_id, ApiKey.user_id == user_id)
        )
        if owned is None:
            raise ValidationFailed("no API key of yours has this id", field="api_key_id")
    count = await session.scalar(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.user_id == user_id)
    )
    if (count or 0) >= MAX_ENDPOINTS_PER_USER:
        raise ValidationFailed(
            f"at most {MAX_ENDPOINTS_PER_USER} webhook endpoints per user", field="url"
        )
    secret = new_secret()
    now = utcnow()
    endpoint = WebhookEndpoint(
        id=new_id(),
        user_id=user_id,
        api_key_id=api_key_id,
        url=url,
        description=description,
        secret_encrypted=box.encrypt(secret),
        events=chosen,
        enabled=True,
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    await session.commit()
    return endpoint, secret


async def get_endpoint(session: AsyncSession, user_id: str, endpoint_id: str) -> WebhookEndpoint:
    """The user's endpoint; another user's is as missing as a nonexistent one."""
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.user_id != user_id:
        raise WebhookNotFound()
    return endpoint


async def list_endpoints(session: AsyncSession, user_id: str) -> Sequence[WebhookEndpoint]:
    return (
        await session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.user_id == user_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    ).all()


def set_enabled(endpoint: WebhookEndpoint, enabled: bool, reason: str | None = None) -> None:
    """Enable (forgetting the failure streak) or disable (saying why)."""
    endpoint.enabled = enabled
    endpoint.disabled_reason = None if enabled else reason
    if enabled:
        endpoint.failing_since = None


async def delete_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    """Remove the endpoint and its deliveries (their attempts go with them)."""
    await session.execute(delete(OutboxItem).where(OutboxItem.target_id == endpoint.id))
    await session.delete(endpoint)
    await session.commit()


async def list_deliveries(
    session: AsyncSession, endpoint: WebhookEndpoint, *, limit: int, before: str | None
) -> Sequence[OutboxItem]:
    """The endpoint's deliveries, newest first; `before`: the last delivery id of a page."""
    query = select(OutboxItem).where(
        OutboxItem.kind == OutboxKind.WEBHOOK, OutboxItem.target_id == endpoint.id
    )
    if before is not None:
        cursor = await get_delivery(session, endpoint, before)
        query = query.where(
            or_(
                OutboxItem.created_at < cursor.created_at,
                and_(OutboxItem.created_at == cursor.created_at, OutboxItem.id < cursor.id),
            )
        )
    return (
        await session.scalars(
            query.order_by(OutboxItem.created_at.desc(), OutboxItem.id.desc()).limit(limit)
        )
    ).all()


async def get_delivery(
    session: AsyncSession, endpoint: WebhookEndpoint, delivery_id: str
) -> OutboxItem:
    item = await session.get(OutboxItem, delivery_id)
    if item is None or item.kind != OutboxKind.WEBHOOK or item.target_id != endpoint.id:
        raise DeliveryNotFound()
    return item


async def list_attempts(session: AsyncSession, item: OutboxItem) -> Sequence[OutboxAttempt]:
    """The delivery's attempts, oldest first."""
    return (
        await session.scalars(
            select(OutboxAttempt)
            .where(OutboxAttempt.item_id == item.id)
            .order_by(OutboxAttempt.attempted_at, OutboxAttempt.id)
        )
    ).all()


def in_flight(item: OutboxItem) -> bool:
    """Whether a worker is attempting the delivery right now: claimed, its lease running."""
    return item.claimed_by is not None and item.next_attempt_at > utcnow()


async def redeliver(session: AsyncSession, item: OutboxItem) -> OutboxItem:
    """Send again now, with the same `webhook-id` and body, and a fresh retry schedule."""
    if in_flight(item):
        # Its worker would record its outcome over ours, or both would send it at once.
        raise DeliveryInFlight("try again once the current attempt has ended")
    item.status = OutboxStatus.PENDING
    item.attempts = 0
    item.next_attempt_at = utcnow()
    item.claimed_by = None
    item.delivered_at = None
    outbox.wake_after_commit(session)
    await session.commit()
    return item


async def check_encryption_key(session: AsyncSession, box: SecretBox) -> None:
    """Refuse a key that cannot open the secrets already stored: every host of one database
    must share ENCRYPTION_KEY, or callbacks would fail on some of them."""
    for column in (WebhookEndpoint.secret_encrypted, Channel.secret_encrypted):
        sample = await session.scalar(select(column).where(column.is_not(None)).limit(1))
        if sample is None:
            continue
        try:
            box.decrypt(sample)
        except SecretUnreadable as exc:
            raise SecretUnreadable(
                "ENCRYPTION_KEY cannot decrypt the secrets stored in this database: give "
                "every server of it the same ENCRYPTION_KEY (the one in the data dir of the "
                "first, or the value you set), listing older keys after the new one"
            ) from exc


def event_body(event_type: EventType, now: datetime, data: dict[str, Any]) -> str:
    """The JSON body every endpoint gets for one event (each delivery its own `webhook-id`)."""
    return json.dumps(
        {"type": event_type, "timestamp": iso(now), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


async def emit(
    session: AsyncSession,
    event_type: EventType,
    *,
    user_id: str,
    api_key_id: str | None,
    data: dict[str, Any] | Callable[[], dict[str, Any]],
) -> int:
    """Queue `event_type` for every enabled endpoint that wants it, in the caller's
    transaction; returns how many deliveries were queued.

    `data` may be a function: it is called only when some endpoint wants the event, which
    is seldom, so the body of a message is not rendered for nobody.
    """
    # This runs for every message, usually to find nothing: cached (see webhook_routes).
    endpoints = await webhook_routes.routes_of(session, user_id, api_key_id)
    now = utcnow()
    body: str | None = None
    queued = 0
    for endpoint in endpoints:
        if event_type not in endpoint.events:
            continue
        body = body or event_body(event_type, now, data() if callable(data) else data)
        outbox.enqueue(
            session,
            kind=OutboxKind.WEBHOOK,
            target_id=endpoint.id,
            user_id=endpoint.user_id,
            event_type=event_type,
            payload=body,
            now=now,
        )
        queued += 1
    return queued
