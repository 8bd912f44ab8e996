"""`relaychat keys`: create, list, revoke and rotate API keys; secrets are printed once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.cli._common import (
    console,
    error_exit,
    load_settings,
    run_in_session,
    servers_bus,
    table,
)
from relaychat.domain.access.key_cache import key_changed
from relaychat.domain.access.keys import (
    KEY_PREFIX,
    KeyPermissions,
    RateLimitRule,
    create_key,
    find_key,
    key_status,
    revoke_key,
    rotate_key,
    stored_permissions,
)
from relaychat.domain.accounts.users import find_user_by_email, normalize_email
from relaychat.errors import UserNotFound
from relaychat.settings import Settings
from relaychat.storage.models import ApiKey, User
from relaychat.storage.types import utcnow

keys_app = typer.Typer(help="Manage API keys for external systems.")


async def _announce(settings: Settings, lookup: str) -> None:
    """Tell running servers to forget the key (through Redis; else their cache TTL applies)."""
    async with servers_bus(settings) as bus:
        await key_changed(bus, lookup)


def _rate_limit(value: str | None) -> RateLimitRule | None:
    if not value:
        return None
    requests, _, window = value.partition("/")
    try:
        return RateLimitRule(requests=int(requests), window=int(window or 1))
    except (ValueError, ValidationError) as exc:
        raise typer.BadParameter(
            "use REQUESTS/SECONDS with both positive, e.g. 100/60", param_hint="--rate-limit"
        ) from exc


@keys_app.command("create")
def keys_create(
    owner: Annotated[str, typer.Option(help="Email of the owning user.")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
    system: Annotated[
        bool, typer.Option("--system", help="May act for any user (owner must be an admin).")
    ] = False,
    conversations: Annotated[
        list[str] | None, typer.Option(help="Conversation id glob, e.g. 'sms-*' (repeat).")
    ] = None,
    endpoints: Annotated[list[str] | None, typer.Option(help="Allowed endpoint (repeat).")] = None,
    agents: Annotated[list[str] | None, typer.Option(help="Allowed agent id (repeat).")] = None,
    required_metadata: Annotated[
        list[str] | None, typer.Option(help="Metadata field every message must carry (repeat).")
    ] = None,
    rate_limit: Annotated[
        str | None, typer.Option(help="REQUESTS/SECONDS, e.g. 100/60.", show_default=False)
    ] = None,
    can_create_conversations: Annotated[
        bool, typer.Option("--can-create-conversations", help="May create conversations.")
    ] = False,
    no_respond: Annotated[
        bool, typer.Option("--no-respond", help="May not trigger replies.")
    ] = False,
    can_name_user: Annotated[
        bool, typer.Option("--can-name-user", help="May name its owner explicitly.")
    ] = False,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, help="Expire after this many days.")
    ] = None,
    default_endpoint: Annotated[
        str | None, typer.Option(help="Endpoint of conversations it creates.")
    ] = None,
    default_model: Annotated[
        str | None, typer.Option(help="Model of conversations it creates.")
    ] = (None),
    default_agent: Annotated[
        str | None, typer.Option(help="Agent of conversations it creates.")
    ] = None,
    max_tokens_per_day: Annotated[
        int | None,
        typer.Option(min=1, help="Daily token budget (UTC day); over it, replies are refused 429."),
    ] = None,
) -> None:
    """Create a key; prints its id and its secret, which is never shown again."""
    settings = load_settings()
    try:
        permissions = KeyPermissions(
            allowed_conversations=conversations or None,
            allowed_endpoints=endpoints or None,
            allowed_agents=agents or None,
            required_metadata=required_metadata or [],
            rate_limit=_rate_limit(rate_limit),
            can_create_conversations=can_create_conversations,
            can_respond=not no_respond,
            can_name_user=can_name_user,
            default_endpoint=default_endpoint,
            default_model=default_model,
            default_agent_id=default_agent,
            max_tokens_per_day=max_tokens_per_day,
        )
    except ValidationError as exc:
        error_exit(str(exc), code=2)
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None

    async def _create(session: AsyncSession) -> tuple[ApiKey, str]:
        user = await find_user_by_email(session, owner)
        if user is None:
            raise UserNotFound(f"no user with email {owner}")
        return await create_key(
            session,
            user,
            name=name,
            permissions=permissions,
            expires_at=expires_at,
            system=system,
        )

    key, secret = run_in_session(settings, _create)
    kind = "system key" if key.system else "key"
    typer.echo(f"created {kind} {key.name} ({key.id}) for {owner}")
    typer.echo(f"secret: {secret}")
    typer.secho("Store the secret now: it is not shown again.", fg="yellow", err=True)


@keys_app.command("list")
def keys_list(
    owner: Annotated[str | None, typer.Option(help="Only this user's keys (email).")] = None,
) -> None:
    """Print keys as a table (every user's, or one owner's)."""

    async def _rows(session: AsyncSession) -> Sequence[Row[ApiKey, str]]:
        query = select(ApiKey, User.email).join(User, User.id == ApiKey.user_id)
        if owner:
            query = query.where(User.email == normalize_email(owner))
        return (await session.execute(query.order_by(ApiKey.created_at, ApiKey.id))).all()

    output = table(
        "id", "name", "owner", "prefix", "system", "status", "conversations", "rate", "last used"
    )
    for key, email in run_in_session(load_settings(), _rows):
        perms = stored_permissions(key)
        rate = perms.rate_limit
        output.add_row(
            key.id,
            key.name,
            email,
            f"{KEY_PREFIX}{key.lookup}",
            "yes" if key.system else "",
            key_status(key),
            ", ".join(perms.allowed_conversations or ["*"]),
            f"{rate.requests}/{rate.window}s" if rate else "",
            key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never",
        )
    console.print(output)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key for good."""
    settings = load_settings()

    async def _revoke(session: AsyncSession) -> None:
        key = await revoke_key(session, await find_key(session, key_id))
        await _announce(settings, key.lookup)

    run_in_session(settings, _revoke)
    typer.echo(f"revoked {key_id}")


@keys_app.command("rotate")
def keys_rotate(
    key_id: str,
    grace_seconds: Annotated[
        int, typer.Option(min=0, max=7 * 24 * 3600, help="How long the old secret still works.")
    ] = 3600,
) -> None:
    """Give a key a new secret (printed once); the old one works for the grace period."""
    settings = load_settings()

    async def _rotate(session: AsyncSession) -> tuple[ApiKey, str]:
        key = await find_key(session, key_id)
        rotated = await rotate_key(session, key, grace_seconds=grace_seconds)
        await _announce(settings, key.lookup)
        return rotated

    key, secret = run_in_session(settings, _rotate)
    until = key.previous_valid_until
    typer.echo(f"rotated {key.name} ({key.id})")
    typer.echo(f"secret: {secret}")
    typer.echo(
        f"old secret works until {until:%Y-%m-%d %H:%M:%S} UTC" if until else "old secret revoked"
    )
    typer.secho("Store the secret now: it is not shown again.", fg="yellow", err=True)
