"""`relaychat db`: database maintenance; `db upgrade` is the one way (besides `serve`) to
migrate; `db backup` / `db restore` copy the embedded database with its kept secrets."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import URL, make_url

from relaychat.cli._common import error_exit, load_settings, sqlite_file
from relaychat.settings import Settings
from relaychat.storage import backup as backups
from relaychat.storage import migrate

db_app = typer.Typer(help="Database maintenance.")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply database migrations up to REVISION (default: the newest)."""
    settings = load_settings()
    migrate.upgrade(settings.effective_database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("backup")
def db_backup(
    path: Annotated[Path, typer.Argument(help="The archive to write (a .tar.gz file).")],
) -> None:
    """Copy the embedded database and the data dir's secrets to PATH, while the server runs."""

    def instead(url: str) -> str:
        command = _pg_command("pg_dump --format=custom --file", path, url)
        return (
            "relaychat's own backups are for the embedded SQLite database; for PostgreSQL "
            f"use pg_dump:\n  {command}\nand keep the data dir's jwt_secret and "
            "encryption_key (or your JWT_SECRET and ENCRYPTION_KEY) with the dump: the stored "
            "webhook and channel secrets cannot be read without the encryption key"
        )

    settings, database = _embedded(instead)
    try:
        report = backups.backup(database, settings.data_dir, path)
    except backups.BackupError as exc:
        error_exit(str(exc))
    typer.echo(
        f"backed up {database} ({report.database_bytes} bytes, schema {report.revision}) "
        f"to {report.archive}"
    )
    if report.secrets:
        typer.echo(f"with {', '.join(report.secrets)}: keep the archive private")
    for name in report.secrets_not_included:
        typer.secho(
            f"warning: {name} is not in the data dir ({name.upper()} is set in the "
            "environment): keep its value with this backup",
            fg="yellow",
            err=True,
        )


@db_app.command("restore")
def db_restore(
    path: Annotated[Path, typer.Argument(help="An archive `relaychat db backup` wrote.")],
) -> None:
    """Put a backup in place of the embedded database (refused while a server runs on it)."""

    def instead(url: str) -> str:
        command = _pg_command("pg_restore --clean --if-exists --dbname", None, url, path)
        return (
            "relaychat restores the embedded SQLite database; for PostgreSQL use "
            f"pg_restore:\n  {command}"
        )

    settings, database = _embedded(instead)
    try:
        report = backups.restore(path, database, settings.data_dir)
    except backups.BackupError as exc:
        error_exit(str(exc))
    typer.echo(
        f"restored {report.database} from the backup of {report.created_at} "
        f"(schema {report.revision})"
    )
    if report.secrets:
        typer.echo(f"with {', '.join(report.secrets)}")
    for aside in report.moved_aside:
        typer.echo(f"kept what it replaced as {aside}")
    typer.echo("`relaychat serve` migrates it to this release's schema if it is older")


def _embedded(refusal: Callable[[str], str]) -> tuple[Settings, Path]:
    """The settings and the embedded database's file; on PostgreSQL, exit with
    `refusal(DATABASE_URL)` (what to use instead)."""
    settings = load_settings()
    url = settings.effective_database_url
    database = sqlite_file(url)
    if database is None:
        error_exit(refusal(url))
    return settings, database


def _pg_command(program: str, target: Path | None, url: str, source: Path | None = None) -> str:
    """The command for the configured server, its password left out (PGPASSWORD gives it)."""
    parsed = make_url(url)
    libpq = URL.create(
        "postgresql",
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    )
    parts = [*shlex.split(program)]
    if target is not None:
        parts.append(str(target))
    parts.append(libpq.render_as_string(hide_password=False))
    if source is not None:
        parts.append(str(source))
    return shlex.join(parts)
