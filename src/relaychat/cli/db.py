"""`relaychat db`: database maintenance; `db upgrade` is the one way (besides `serve`) to
migrate."""

from __future__ import annotations

import typer

from relaychat.cli._common import load_settings
from relaychat.storage import migrate

db_app = typer.Typer(help="Database maintenance.")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply database migrations up to REVISION (default: the newest)."""
    settings = load_settings()
    migrate.upgrade(settings.effective_database_url, revision)
    typer.echo(f"database at {revision}")
