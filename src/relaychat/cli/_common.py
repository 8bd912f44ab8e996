"""What every `relaychat` command shares: settings, the database, output and exit codes.

Exit codes: 0 done; 1 the command could not be carried out (an application error, a
database that is missing or not migrated, a store that cannot be reached); 2 bad usage
or configuration (typer uses 2 for bad options too).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from pydantic import ValidationError
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.errors import AppError
from relaychat.realtime import create_event_bus
from relaychat.realtime.bus import EventBus
from relaychat.settings import PlaceholderSecretError, Settings, get_settings
from relaychat.storage import migrate
from relaychat.storage.db import create_engine, create_sessionmaker
from relaychat.storage.files import private_dir

T = TypeVar("T")

# Piped output has no terminal width; don't squeeze tables into rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)

UPGRADE_HINT = "run `relaychat db upgrade` first"


class DatabaseNotReady(Exception):
    """The database cannot be reached, or is not migrated to this release's schema."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Stop with one line on stderr: a start-up error is for a person, not a traceback."""
    typer.secho(f"relaychat: {message}", fg="red", err=True)
    raise typer.Exit(code)


def error_exit(detail: str, code: int = 1) -> NoReturn:
    """Stop with `error: …` on stderr, as a refused command does."""
    typer.secho(f"error: {detail}", fg="red", err=True)
    raise typer.Exit(code)


def one_line(exc: BaseException) -> str:
    """An exception as one line: settings errors by field, without drivers' doc links."""
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


def load_settings() -> Settings:
    """The settings from the environment; a configuration error ends the command (exit 2)."""
    try:
        settings = get_settings()
    except (ValidationError, PlaceholderSecretError) as exc:
        fail(f"configuration error: {one_line(exc)}")
    if settings.data_dir.exists():
        # A data dir made by an older release (0755) exposed the database; close it now.
        private_dir(settings.data_dir)
    return settings


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL and in-memory databases)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if database.startswith("file:") else Path(database)


async def _check_schema(session: AsyncSession) -> None:
    current = await migrate.current_revisions(await session.connection())
    heads = migrate.head_revisions()
    if current != heads:
        at = ", ".join(sorted(current)) or "no schema"
        raise DatabaseNotReady(
            f"the database is not at this release's schema (it is at {at}, this release "
            f"needs {', '.join(sorted(heads))}); {UPGRADE_HINT}"
        )
    # Only read so far: end the read transaction so the work starts its own.
    await session.rollback()


def run_in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in a session on a database already at this release's schema.

    Management commands never migrate (only `serve` and `db upgrade` do): a database that
    is missing, unreachable or behind stops the command with exit 1 before anything is
    written.
    """
    url = settings.effective_database_url
    sqlite = sqlite_file(url)
    # Opening a missing SQLite file would create it: refuse before that.
    if sqlite is not None and not sqlite.exists():
        fail(f"no database at {sqlite}; {UPGRADE_HINT}", code=1)

    async def _run() -> T:
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as session:
                try:
                    await _check_schema(session)
                except (SQLAlchemyError, OSError) as exc:
                    raise DatabaseNotReady(f"cannot open the database: {one_line(exc)}") from exc
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(_run())
    except DatabaseNotReady as exc:
        fail(str(exc), code=1)
    except AppError as exc:
        error_exit(exc.detail)


def table(*columns: str) -> Table:
    """A table whose cells wrap instead of being cut: ids must stay copyable."""
    result = Table()
    for column in columns:
        result.add_column(column, overflow="fold", no_wrap=column == "id")
    return result


@asynccontextmanager
async def servers_bus(settings: Settings) -> AsyncIterator[EventBus]:
    """The running servers' bus, so what a command changes leaves their caches at once
    (through Redis). Without Redis, a bus of this process: they see the change when their
    cached entries expire (seconds; see README)."""
    if not settings.redis_url:
        yield create_event_bus(None, settings.redis_key_prefix, settings.event_log_size)
        return
    redis = Redis.from_url(settings.redis_url)
    try:
        yield create_event_bus(redis, settings.redis_key_prefix, settings.event_log_size)
    finally:
        await redis.aclose()
