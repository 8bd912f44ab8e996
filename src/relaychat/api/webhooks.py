"""Webhook endpoints: register (the secret is shown once), list, change, delete; deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.outbound import webhooks
from relaychat.domain.outbound.webhooks import EVENT_DESCRIPTIONS, EVENT_TYPES, EventType
from relaychat.http.deps import CurrentUser, ServicesDep, SessionDep
from relaychat.resources import Timestamp
from relaychat.safehttp import check_url
from relaychat.statuses import OutboxStatus
from relaychat.storage.models import OutboxItem, WebhookEndpoint

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])

EndpointId = Annotated[str, Path(max_length=64)]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    events: list[EventType] = Field(
        default_factory=lambda: list(EVENT_TYPES),
        min_length=1,
        description="Event types to receive; all of them by default.",
    )
    api_key_id: str | None = Field(
        None, max_length=64, description="Only events caused by this key of yours."
    )
    description: str | None = Field(None, max_length=500)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, min_length=1, max_length=2048)
    events: list[EventType] | None = Field(None, min_length=1)
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = None


class WebhookOut(BaseModel):
    """An endpoint as its owner sees it, read from the row (never its secret)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    description: str | None
    events: list[str]
    api_key_id: str | None
    enabled: bool
    disabled_reason: str | None
    failing_since: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class WebhookWithSecret(BaseModel):
    webhook: WebhookOut
    secret: str = Field(description="The `whsec_…` signing secret; shown this once.")


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class EventTypeOut(BaseModel):
    type: EventType
    description: str


class EventTypeList(BaseModel):
    event_types: list[EventTypeOut]


class DeliveryOut(BaseModel):
    id: str = Field(description="The `webhook-id` header, the same on every attempt.")
    event_type: str
    status: OutboxStatus = Field(title="Status")  # titled as it was when it was a `str`
    attempts: int
    in_flight: bool = Field(
        description="An attempt is being made right now; `next_attempt_at` is then when its "
        "lease lapses (the next try, should its worker die), and redelivering waits for it."
    )
    next_attempt_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: Timestamp | None
    created_at: Timestamp
    payload: str
    request_id: str | None = Field(
        description="The `X-Request-Id` of the request that caused it (or of the reply's "
        "request); every attempt's log line carries it."
    )


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempted_at: Timestamp
    status_code: int | None
    error: str | None
    duration_ms: float
    response_body: str | None = Field(description="The first KiB of the receiver's answer.")


class DeliveryDetail(DeliveryOut):
    attempts_log: list[AttemptOut]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
    next_before: str | None


def _delivery(item: OutboxItem) -> DeliveryOut:
    return DeliveryOut(
        id=item.id,
        event_type=item.event_type,
        status=item.status,
        attempts=item.attempts,
        in_flight=webhooks.in_flight(item),
        # The next attempt is only news while one is planned.
        next_attempt_at=item.next_attempt_at if item.status == OutboxStatus.PENDING else None,
        last_attempt_at=item.last_attempt_at,
        last_status_code=item.last_status_code,
        last_error=item.last_error,
        delivered_at=item.delivered_at,
        created_at=item.created_at,
        payload=item.payload,
        request_id=item.request_id,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: WebhookCreate, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> WebhookWithSecret:
    """Register a URL for signed callbacks of your conversations (or of one of your keys)."""
    url = check_url(body.url, allow_private=services.settings.webhook_allow_private_networks)
    endpoint, secret = await webhooks.create_endpoint(
        session,
        services.secrets,
        user.id,
        url=url,
        events=body.events,
        api_key_id=body.api_key_id,
        description=body.description,
    )
    return WebhookWithSecret(webhook=WebhookOut.model_validate(endpoint), secret=secret)


@router.get("")
async def list_(user: CurrentUser, session: SessionDep) -> WebhookList:
    """Your webhook endpoints, oldest first."""
    return WebhookList(
        webhooks=[
            WebhookOut.model_validate(e) for e in await webhooks.list_endpoints(session, user.id)
        ]
    )


# Declared before `/{endpoint_id}`, which would otherwise take `event-types` for an id.
@router.get("/event-types")
async def event_types(_user: CurrentUser) -> EventTypeList:
    """The event types an endpoint may subscribe to, and what each means."""
    return EventTypeList(
        event_types=[EventTypeOut(type=t, description=EVENT_DESCRIPTIONS[t]) for t in EVENT_TYPES]
    )


async def owned_endpoint(
    endpoint_id: EndpointId, user: CurrentUser, session: SessionDep
) -> WebhookEndpoint:
    """The caller's endpoint named in the path (404 for anyone else's)."""
    return await webhooks.get_endpoint(session, user.id, endpoint_id)


OwnedEndpoint = Annotated[WebhookEndpoint, Depends(owned_endpoint)]


async def owned_delivery(
    endpoint: OwnedEndpoint,
    delivery_id: Annotated[str, Path(max_length=64)],
    session: SessionDep,
) -> OutboxItem:
    """A delivery of the caller's endpoint named in the path."""
    return await webhooks.get_delivery(session, endpoint, delivery_id)


OwnedDelivery = Annotated[OutboxItem, Depends(owned_delivery)]


@router.get("/{endpoint_id}")
async def get(endpoint: OwnedEndpoint) -> WebhookOut:
    return WebhookOut.model_validate(endpoint)


@router.patch("/{endpoint_id}")
async def patch(
    endpoint: OwnedEndpoint, body: WebhookPatch, session: SessionDep, services: ServicesDep
) -> WebhookOut:
    """Change the URL, events or description; `enabled: true` revives a disabled endpoint."""
    if body.url is not None:
        endpoint.url = check_url(
            body.url, allow_private=services.settings.webhook_allow_private_networks
        )
        endpoint.failing_since = None  # a new address starts a new record
    if body.events is not None:
        endpoint.events = webhooks.check_events(body.events)
    if "description" in body.model_fields_set:
        endpoint.description = body.description
    if body.enabled is not None:
        webhooks.set_enabled(endpoint, body.enabled, "disabled by its owner")
    await session.commit()
    return WebhookOut.model_validate(endpoint)


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(endpoint: OwnedEndpoint, session: SessionDep) -> None:
    """Delete the endpoint and its delivery log; pending deliveries are dropped."""
    await webhooks.delete_endpoint(session, endpoint)


@router.get("/{endpoint_id}/deliveries")
async def deliveries(
    endpoint: OwnedEndpoint,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    before: Annotated[
        str | None, Query(max_length=64, description="`next_before` of the previous page.")
    ] = None,
) -> DeliveryList:
    """The endpoint's deliveries, newest first, with their state and last attempt."""
    items = await webhooks.list_deliveries(session, endpoint, limit=limit, before=before)
    return DeliveryList(
        deliveries=[_delivery(i) for i in items],
        next_before=items[-1].id if len(items) == limit else None,
    )


@router.get("/{endpoint_id}/deliveries/{delivery_id}")
async def delivery(item: OwnedDelivery, session: SessionDep) -> DeliveryDetail:
    """One delivery with every attempt made, oldest first."""
    attempts = await webhooks.list_attempts(session, item)
    return DeliveryDetail(
        **_delivery(item).model_dump(),
        attempts_log=[AttemptOut.model_validate(a) for a in attempts],
    )


@router.post("/{endpoint_id}/deliveries/{delivery_id}/redeliver", status_code=202)
async def redeliver(item: OwnedDelivery, session: SessionDep) -> DeliveryOut:
    """Send a delivery again now, with the same `webhook-id`, and a fresh retry schedule."""
    return _delivery(await webhooks.redeliver(session, item))
