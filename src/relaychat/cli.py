"""The `relaychat` command: serve, database migrations and user management."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.devtools.cli import dev_app
from relaychat.errors import AppError
from relaychat.settings import PlaceholderSecretError, Settings, get_settings
from relaychat.storage import migrate
from relaychat.storage.db import create_engine, create_sessionmaker

app = typer.Typer(help="relaychat: chat server for people, LLMs, agents and external systems.")
db_app = typer.Typer(help="Database maintenance.")
users_app = typer.Typer(help="Manage user accounts.")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(dev_app, name="dev")

T = TypeVar("T")
console = Console()


def _settings() -> Settings:
    try:
        return get_settings()
    except (ValidationError, PlaceholderSecretError) as exc:
        typer.secho(f"configuration error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def _run() -> T:
        engine = create_engine(settings.effective_database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(_run())
    except AppError as exc:
        typer.secho(f"error: {exc.detail}", fg="red", err=True)
        raise typer.Exit(1) from exc


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env PORT].")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Migrate the database, then serve HTTP."""
    import uvicorn

    settings = _settings()
    try:
        # Resolve (or generate) the JWT secret once, before workers race to create it.
        settings.resolved_jwt_secret()
    except PlaceholderSecretError as exc:
        typer.secho(f"configuration error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    migrate.upgrade(settings.effective_database_url)
    uvicorn.run(
        "relaychat.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
        # Open event streams would otherwise hold shutdown (and generation cleanup) forever.
        timeout_graceful_shutdown=5,
    )


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply database migrations up to REVISION (default: the newest)."""
    settings = _settings()
    migrate.upgrade(settings.effective_database_url, revision)
    typer.echo(f"database at {revision}")


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
    from relaychat.domain.users import create_user

    settings = _settings()
    password = _read_password()
    user = _with_session(
        settings,
        lambda s: create_user(s, email=email, name=name, password=password, admin=admin or None),
    )
    typer.echo(f"created {user.role} {user.email} ({user.id})")


@users_app.command("list")
def users_list() -> None:
    """Print every user as a table."""
    from relaychat.domain.users import list_users

    rows = _with_session(_settings(), list_users)
    table = Table("id", "email", "name", "role", "phone", "created")
    for user in rows:
        table.add_row(
            user.id,
            user.email,
            user.name,
            user.role,
            user.phone_number or "",
            user.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


def main() -> None:
    app()
