"""`relaychat webhooks`: register, list and delete webhook endpoints; secrets print once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.cli._common import console, load_settings, run_in_session, table
from relaychat.crypto import SecretBox
from relaychat.domain.accounts.users import find_user_by_email, normalize_email
from relaychat.domain.outbound.webhooks import (
    EVENT_TYPES,
    WebhookNotFound,
    create_endpoint,
    delete_endpoint,
)
from relaychat.errors import UserNotFound
from relaychat.safehttp import check_url
from relaychat.storage.models import User, WebhookEndpoint

webhooks_app = typer.Typer(help="Manage webhook endpoints (signed callbacks).")


@webhooks_app.command("create")
def webhooks_create(
    owner: Annotated[str, typer.Option(help="Email of the owning user.")],
    url: Annotated[str, typer.Option(help="Where the callbacks are POSTed.")],
    events: Annotated[
        list[str] | None,
        typer.Option("--event", help="Event type to receive (repeat); all by default."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Only events caused by this API key (id) of the owner.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="A note for humans.")] = None,
) -> None:
    """Register an endpoint; prints its id and its signing secret, which is never shown again."""
    settings = load_settings()

    async def _create(session: AsyncSession) -> tuple[WebhookEndpoint, str]:
        # Made once the database is known to be ready: the key may be generated (written).
        box = SecretBox(settings.resolved_encryption_keys())
        checked = check_url(url, allow_private=settings.webhook_allow_private_networks)
        user = await find_user_by_email(session, owner)
        if user is None:
            raise UserNotFound(f"no user with email {owner}")
        return await create_endpoint(
            session,
            box,
            user.id,
            url=checked,
            events=events or list(EVENT_TYPES),
            api_key_id=api_key,
            description=description,
        )

    endpoint, secret = run_in_session(settings, _create)
    typer.echo(f"created webhook {endpoint.id} -> {endpoint.url} ({', '.join(endpoint.events)})")
    typer.echo(f"secret: {secret}")
    typer.secho("Store the secret now: it is not shown again.", fg="yellow", err=True)


@webhooks_app.command("list")
def webhooks_list(
    owner: Annotated[str | None, typer.Option(help="Only this user's endpoints (email).")] = None,
) -> None:
    """Print endpoints as a table, with their state."""

    async def _rows(session: AsyncSession) -> Sequence[Row[WebhookEndpoint, str]]:
        query = select(WebhookEndpoint, User.email).join(User, User.id == WebhookEndpoint.user_id)
        if owner:
            query = query.where(User.email == normalize_email(owner))
        return (
            await session.execute(query.order_by(WebhookEndpoint.created_at, WebhookEndpoint.id))
        ).all()

    output = table("id", "owner", "url", "events", "key", "state")
    for endpoint, email in run_in_session(load_settings(), _rows):
        state = "enabled" if endpoint.enabled else f"disabled: {endpoint.disabled_reason}"
        output.add_row(
            endpoint.id,
            email,
            endpoint.url,
            ", ".join(endpoint.events),
            endpoint.api_key_id or "",
            state,
        )
    console.print(output)


@webhooks_app.command("delete")
def webhooks_delete(endpoint_id: str) -> None:
    """Delete an endpoint and its delivery log."""

    async def _delete(session: AsyncSession) -> None:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            raise WebhookNotFound(f"no webhook endpoint {endpoint_id}")
        await delete_endpoint(session, endpoint)

    run_in_session(load_settings(), _delete)
    typer.echo(f"deleted {endpoint_id}")
