"""The `relaychat` command: serve, database migrations and user management."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.cli_channels import channels_app
from relaychat.cli_keys import keys_app
from relaychat.cli_webhooks import webhooks_app
from relaychat.crypto import SecretBox
from relaychat.devtools.cli import dev_app
from relaychat.errors import AppError, UserNotFound
from relaychat.llm.config import load_config
from relaychat.llm.mcp.config import load_mcp_config
from relaychat.settings import PlaceholderSecretError, Settings, get_settings
from relaychat.storage import migrate
from relaychat.storage.db import create_engine, create_sessionmaker
from relaychat.storage.files import private_dir

app = typer.Typer(
    help="relaychat: chat server for people, LLMs, agents and external systems.",
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database maintenance.")
users_app = typer.Typer(help="Manage user accounts.")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
agents_app = typer.Typer(help="Manage agents.")
app.add_typer(agents_app, name="agents")
app.add_typer(keys_app, name="keys")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(channels_app, name="channels")
app.add_typer(dev_app, name="dev")

T = TypeVar("T")
# Piped output has no terminal width; don't squeeze tables into rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)


def _fail(message: str, code: int = 2) -> NoReturn:
    """Stop with one line on stderr: a start-up error is for a person, not a traceback."""
    typer.secho(f"relaychat: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
    # A config error lists its problems on further lines; drivers add a link to their docs.
    lines = [
        line.strip()
        for line in str(exc).splitlines()
        if line.strip() and not line.strip().startswith("(Background on this error")
    ]
    return "; ".join(lines) or type(exc).__name__


def _settings() -> Settings:
    try:
        settings = get_settings()
    except (ValidationError, PlaceholderSecretError) as exc:
        _fail(f"configuration error: {_one_line(exc)}")
    if settings.data_dir.exists():
        # A data dir made by an older release (0755) exposed the database; close it now.
        private_dir(settings.data_dir)
    return settings


def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    # Management commands bring the schema up to date first, as `serve` does.
    migrate.upgrade(settings.effective_database_url)

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
    if workers > 1 and not settings.redis_url:
        # Rate limits, events and aborts would silently become per-process: refuse instead.
        _fail(
            "configuration error: --workers > 1 needs REDIS_URL (shared rate limits, events "
            "and aborts); without it each worker would count and broadcast on its own"
        )
    try:
        # Resolve (or generate) the secrets once, before workers race to create them.
        settings.resolved_jwt_secret()
        box = SecretBox(settings.resolved_encryption_keys())
        # What the app would otherwise find at start-up, where uvicorn prints a traceback.
        load_config(settings.config_path)
        load_mcp_config(settings.config_path)
    except (PlaceholderSecretError, ValueError) as exc:
        _fail(f"configuration error: {_one_line(exc)}")
    try:
        migrate.upgrade(settings.effective_database_url)
        asyncio.run(_check_stores(settings, box))
    except Exception as exc:  # any failure to reach or read the stores: one line, exit 1
        _fail(f"cannot start: {_one_line(exc)}", code=1)
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


async def _check_stores(settings: Settings, box: SecretBox) -> None:
    """The stored secrets open with this ENCRYPTION_KEY, and Redis answers when configured."""
    from redis.asyncio import Redis

    from relaychat.domain.webhooks import check_encryption_key

    engine = create_engine(settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await check_encryption_key(session, box)
    finally:
        await engine.dispose()
    if settings.redis_url:
        redis = Redis.from_url(settings.redis_url)
        try:
            await redis.ping()
        finally:
            await redis.aclose()


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply database migrations up to REVISION (default: the newest)."""
    settings = _settings()
    migrate.upgrade(settings.effective_database_url, revision)
    typer.echo(f"database at {revision}")


def _table(*columns: str) -> Table:
    """A table whose cells wrap instead of being cut: ids must stay copyable."""
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column == "id")
    return table


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
    table = _table("id", "email", "name", "role", "phone", "created")
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


@agents_app.command("create")
def agents_create(
    owner: Annotated[str, typer.Option(help="Email of the owning user.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    endpoint: Annotated[str, typer.Option(help="LLM endpoint from relaychat.yaml.")],
    model: Annotated[str | None, typer.Option(help="Model (default: the endpoint's).")] = None,
    instructions: Annotated[str | None, typer.Option(help="System instructions.")] = None,
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
    tool: Annotated[list[str] | None, typer.Option(help="A tool it may call (repeat).")] = None,
    mcp_server: Annotated[
        list[str] | None, typer.Option(help="An MCP server whose tools it may call (repeat).")
    ] = None,
    public: Annotated[bool, typer.Option("--public", help="Usable by every user.")] = False,
) -> None:
    """Create an agent; prints its id."""
    from relaychat.domain.agents import check_agent_fields, create_agent
    from relaychat.domain.toolbox import local_tool_names
    from relaychat.domain.users import find_user_by_email
    from relaychat.llm.mcp.config import load_mcp_config
    from relaychat.llm.registry import load_registry

    settings = _settings()
    fields = {
        "name": name,
        "endpoint": endpoint,
        "model": model,
        "instructions": instructions,
        "description": description,
        "tools": tool or [],
        "mcp_servers": mcp_server or [],
        "visibility": "public" if public else "private",
    }

    async def _create(session: AsyncSession) -> Any:
        registry = load_registry(settings.config_path)
        try:
            check_agent_fields(
                fields,
                endpoints=registry.names(),
                tools=local_tool_names(),
                servers=list(load_mcp_config(settings.config_path)),
            )
        finally:
            await registry.aclose()
        user = await find_user_by_email(session, owner)
        if user is None:
            raise UserNotFound(f"no user with email {owner}")
        return await create_agent(session, user, fields)

    agent = _with_session(settings, _create)
    typer.echo(f"created {agent.visibility} agent {agent.name} ({agent.id})")


@agents_app.command("list")
def agents_list() -> None:
    """Print every agent as a table."""
    from sqlalchemy import select

    from relaychat.storage.models import Agent, User

    async def _rows(session: AsyncSession) -> Any:
        query = select(Agent, User.email).join(User, User.id == Agent.user_id)
        return (await session.execute(query.order_by(Agent.created_at))).all()

    table = _table("id", "name", "owner", "endpoint", "model", "tools", "visibility")
    for agent, email in _with_session(_settings(), _rows):
        table.add_row(
            agent.id,
            agent.name,
            email,
            agent.endpoint,
            agent.model or "",
            ", ".join([*agent.tools, *(f"mcp:{s}" for s in agent.mcp_servers)]),
            agent.visibility,
        )
    console.print(table)


@agents_app.command("delete")
def agents_delete(agent_id: str) -> None:
    """Delete an agent and what it remembered."""
    from relaychat.storage.models import Agent

    async def _delete(session: AsyncSession) -> bool:
        agent = await session.get(Agent, agent_id)
        if agent is None:
            return False
        await session.delete(agent)
        await session.commit()
        return True

    if not _with_session(_settings(), _delete):
        typer.secho(f"error: no agent {agent_id}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"deleted {agent_id}")


def main() -> None:
    app()
