"""`relaychat users`: create and list user accounts, change roles, disable and enable them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.cli._common import console, load_settings, run_in_session, servers_bus, table
from relaychat.domain.accounts import admin
from relaychat.domain.accounts.users import create_user, find_user_by_email, list_users
from relaychat.errors import UserNotFound
from relaychat.statuses import UserRole
from relaychat.storage.models import User

users_app = typer.Typer(help="Manage user accounts.")


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Login email.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    admin: Annotated[bool, typer.Option("--admin", help="Give the user the admin role.")] = False,
) -> None:
    """Create a user; the password is read from stdin, or prompted for on a terminal."""
    settings = load_settings()
    # Asked for once the database is known to be ready: not typed in for nothing.
    user = run_in_session(
        settings,
        lambda s: create_user(
            s, email=email, name=name, password=_read_password(), admin=admin or None
        ),
    )
    typer.echo(f"created {user.role} {user.email} ({user.id})")


@users_app.command("list")
def users_list() -> None:
    """Print every user as a table."""
    rows = run_in_session(load_settings(), list_users)
    output = table("id", "email", "name", "role", "state", "phone", "created")
    for user in rows:
        output.add_row(
            user.id,
            user.email,
            user.name,
            user.role,
            "disabled" if user.disabled_at else "active",
            user.phone_number or "",
            user.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(output)


Email = Annotated[str, typer.Argument(help="The user's login email.")]


def _change(email: str, *, role: UserRole | None = None, disabled: bool | None = None) -> User:
    """What an admin does on the Admin page, by an operator: the same rules (the instance
    keeps an enabled admin), and running servers told through Redis when there is one."""
    settings = load_settings()

    async def work(session: AsyncSession) -> User:
        user = await find_user_by_email(session, email)
        if user is None:
            raise UserNotFound(f"no user with email {email}")
        async with servers_bus(settings) as bus:
            return await admin.update_user(
                session, bus, None, user.id, role=role, disabled=disabled
            )

    return run_in_session(settings, work)


@users_app.command("disable")
def users_disable(email: Email) -> None:
    """Disable an account until enabled again.

    Its sessions end, it cannot sign in, and its API keys, and system keys and channels
    posting for it, are refused.
    """
    user = _change(email, disabled=True)
    typer.echo(f"disabled {user.email}")


@users_app.command("enable")
def users_enable(email: Email) -> None:
    """Let a disabled account sign in again (its old sessions stay ended)."""
    user = _change(email, disabled=False)
    typer.echo(f"enabled {user.email}")


@users_app.command("role")
def users_role(
    email: Email,
    role: Annotated[UserRole, typer.Argument(help="admin or user.")],
) -> None:
    """Make a user an admin, or an admin a user (the instance keeps an enabled admin)."""
    user = _change(email, role=role)
    typer.echo(f"{user.email} is now {'an admin' if user.role == UserRole.ADMIN else 'a user'}")
