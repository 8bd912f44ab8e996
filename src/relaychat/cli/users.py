"""`relaychat users`: create and list user accounts."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from relaychat.cli._common import console, load_settings, run_in_session, table
from relaychat.domain.accounts.users import create_user, list_users

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
    output = table("id", "email", "name", "role", "phone", "created")
    for user in rows:
        output.add_row(
            user.id,
            user.email,
            user.name,
            user.role,
            user.phone_number or "",
            user.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(output)
