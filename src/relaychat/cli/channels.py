"""`relaychat channels`: create, list and delete inbound channels (Twilio SMS and WhatsApp).

The CLI is an operator's tool: it acts as the channel's manager (`--manager`; by default
the owner, or the oldest admin for channels that route by phone number) with that user's
rights, so the rules of the API hold here too.

The auth token never needs to be on the command line, where `ps` shows it: it is read
from `TWILIO_AUTH_TOKEN`, else prompted for (hidden) on a terminal, else read as one line
from stdin.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.cli._common import console, error_exit, load_settings, run_in_session, table
from relaychat.crypto import SecretBox
from relaychat.domain.intake.resolution import find_user
from relaychat.domain.telephony.channels import (
    ChannelNotFound,
    ChannelOut,
    TwilioChannelIn,
    create_channel,
    delete_channel,
)
from relaychat.errors import UserNotFound
from relaychat.statuses import UserRole
from relaychat.storage.models import Channel, User

channels_app = typer.Typer(help="Manage inbound channels (Twilio SMS and WhatsApp).")
create_app = typer.Typer(help="Create a channel.")
channels_app.add_typer(create_app, name="create")


async def _manager(session: AsyncSession, manager: str | None, owner: str | None) -> User:
    ref = (manager or owner or "").strip()
    if ref:
        user = await find_user(session, ref)
    else:
        query = select(User).where(User.role == UserRole.ADMIN).order_by(User.created_at, User.id)
        user = await session.scalar(query.limit(1))
    if user is None:
        raise UserNotFound(f"no user {ref!r}" if ref else "no admin user exists yet")
    return user


def read_auth_token() -> str:
    """The token from the operator: a hidden prompt on a terminal, else a line of stdin."""
    if sys.stdin.isatty():
        token = str(typer.prompt("Twilio auth token", hide_input=True))
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        error_exit(
            "give the auth token (TWILIO_AUTH_TOKEN, --auth-token, or one line on "
            "stdin) or --auth-token-env",
            code=2,
        )
    return token


@create_app.command("twilio")
def create_twilio(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="What the number is for.")],
    account_sid: Annotated[str, typer.Option(help="The Twilio account (AC…).")],
    public_url: Annotated[
        str,
        typer.Option(help="This server's base URL as Twilio reaches it (or the webhook URL)."),
    ],
    auth_token: Annotated[
        str | None,
        typer.Option(
            envvar="TWILIO_AUTH_TOKEN",
            show_envvar=True,
            help="The account's auth token (stored encrypted); better from the environment, "
            "a hidden prompt or stdin than on the command line.",
        ),
    ] = None,
    auth_token_env: Annotated[
        str | None,
        typer.Option(
            help="Read the auth token from this environment variable of the server "
            "(TWILIO_…; an admin's channels only)."
        ),
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="Email or id of the user who owns the conversations.")
    ] = None,
    resolve_by_phone: Annotated[
        bool,
        typer.Option("--resolve-by-phone", help="Senders belong to the user with their number."),
    ] = False,
    provision_unknown: Annotated[
        bool,
        typer.Option("--provision-unknown", help="Create a user for an unknown number."),
    ] = False,
    endpoint: Annotated[str | None, typer.Option(help="Endpoint of new conversations.")] = None,
    model: Annotated[str | None, typer.Option(help="Model of new conversations.")] = None,
    agent_id: Annotated[str | None, typer.Option(help="Agent of new conversations.")] = None,
    api_base_url: Annotated[
        str | None, typer.Option(help="Twilio's API (default https://api.twilio.com).")
    ] = None,
    manager: Annotated[
        str | None, typer.Option(help="Email or id of the user who manages the channel.")
    ] = None,
) -> None:
    """Create a Twilio channel; prints its id and the webhook URL for Twilio's console."""
    settings = load_settings()
    # (Compared by name: typer carries its own copy of click's ParameterSource.)
    source = getattr(ctx.get_parameter_source("auth_token"), "name", None)
    if auth_token_env and source == "ENVIRONMENT":
        auth_token = None  # the variable named for the server wins over the shell's token
    if auth_token is None and auth_token_env is None:
        auth_token = read_auth_token()
    try:
        spec = TwilioChannelIn(
            name=name,
            account_sid=account_sid,
            auth_token=auth_token,
            auth_token_env=auth_token_env,
            public_url=public_url,
            owner=owner,
            resolve_by_phone=resolve_by_phone,
            provision_unknown=provision_unknown,
            endpoint=endpoint,
            model=model,
            agent_id=agent_id,
            api_base_url=api_base_url,
        )
    except ValidationError as exc:
        messages = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'channel'}: {e['msg']}" for e in exc.errors()
        )
        error_exit(messages, code=2)

    async def _create(session: AsyncSession) -> Channel:
        # Made once the database is known to be ready: the key may be generated (written).
        secrets = SecretBox(settings.resolved_encryption_keys())
        actor = await _manager(session, manager, owner)
        return await create_channel(session, actor, spec, secrets)

    view = ChannelOut.from_row(run_in_session(settings, _create))
    typer.echo(f"created twilio channel {view.name} ({view.id})")
    typer.echo(f"webhook url: {view.webhook_url}")


@channels_app.command("list")
def channels_list() -> None:
    """Print every channel as a table (never an auth token)."""

    async def _rows(session: AsyncSession) -> Sequence[Channel]:
        query = select(Channel).order_by(Channel.created_at, Channel.id)
        return (await session.scalars(query)).all()

    output = table("id", "type", "name", "account", "owner", "token", "enabled", "webhook url")
    for channel in run_in_session(load_settings(), _rows):
        view = ChannelOut.from_row(channel)
        output.add_row(
            view.id,
            view.type,
            view.name,
            view.account_sid or "",
            "by phone" if view.resolve_by_phone else view.owner_id or "",
            f"${view.auth_token_env}" if view.auth_token_env else "encrypted",
            "yes" if view.enabled else "no",
            view.webhook_url,
        )
    console.print(output)


@channels_app.command("delete")
def channels_delete(channel_id: str) -> None:
    """Delete a channel; its replies not yet sent are cancelled."""

    async def _delete(session: AsyncSession) -> None:
        channel = await session.get(Channel, channel_id)
        if channel is None:
            raise ChannelNotFound(f"no channel {channel_id}")
        await delete_channel(session, channel)

    run_in_session(load_settings(), _delete)
    typer.echo(f"deleted {channel_id}")
