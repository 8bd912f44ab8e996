"""`relaychat webhooks`: register, list and delete webhook endpoints; secrets print once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Row
    from sqlalchemy.ext.asyncio import AsyncSession

    from relaychat.storage.models import WebhookEndpoint

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
    from relaychat.cli import _settings, _with_session
    from relaychat.crypto import SecretBox
    from relaychat.domain.users import find_user_by_email
    from relaychat.domain.webhooks import EVENT_TYPES, create_endpoint
    from relaychat.errors import UserNotFound
    from relaychat.safehttp import check_url

    settings = _settings()
    box = SecretBox(settings.resolved_encryption_keys())

    async def _create(session: AsyncSession) -> tuple[WebhookEndpoint, str]:
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

    endpoint, secret = _with_session(settings, _create)
    typer.echo(f"created webhook {endpoint.id} -> {endpoint.url} ({', '.join(endpoint.events)})")
    typer.echo(f"secret: {secret}")
    typer.secho("Store the secret now: it is not shown again.", fg="yellow", err=True)


@webhooks_app.command("list")
def webhooks_list(
    owner: Annotated[str | None, typer.Option(help="Only this user's endpoints (email).")] = None,
) -> None:
    """Print endpoints as a table, with their state."""
    from sqlalchemy import select

    from relaychat.cli import _settings, _table, _with_session, console
    from relaychat.domain.users import normalize_email
    from relaychat.storage.models import User, WebhookEndpoint

    async def _rows(session: AsyncSession) -> Sequence[Row[WebhookEndpoint, str]]:
        query = select(WebhookEndpoint, User.email).join(User, User.id == WebhookEndpoint.user_id)
        if owner:
            query = query.where(User.email == normalize_email(owner))
        return (
            await session.execute(query.order_by(WebhookEndpoint.created_at, WebhookEndpoint.id))
        ).all()

    table = _table("id", "owner", "url", "events", "key", "state")
    for endpoint, email in _with_session(_settings(), _rows):
        state = "enabled" if endpoint.enabled else f"disabled: {endpoint.disabled_reason}"
        table.add_row(
            endpoint.id,
            email,
            endpoint.url,
            ", ".join(endpoint.events),
            endpoint.api_key_id or "",
            state,
        )
    console.print(table)


@webhooks_app.command("delete")
def webhooks_delete(endpoint_id: str) -> None:
    """Delete an endpoint and its delivery log."""
    from relaychat.cli import _settings, _with_session
    from relaychat.domain.webhooks import WebhookNotFound, delete_endpoint
    from relaychat.storage.models import WebhookEndpoint

    async def _delete(session: AsyncSession) -> None:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            raise WebhookNotFound(f"no webhook endpoint {endpoint_id}")
        await delete_endpoint(session, endpoint)

    _with_session(_settings(), _delete)
    typer.echo(f"deleted {endpoint_id}")
