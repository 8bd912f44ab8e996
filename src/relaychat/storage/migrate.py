"""Run Alembic migrations programmatically (the CLI and `serve` call this, not the alembic tool)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.ext.asyncio import AsyncConnection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    # Percent signs in passwords would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision`."""
    command.upgrade(alembic_config(url), revision)


def head_revisions() -> frozenset[str]:
    """The revisions a database of this release is at once fully migrated."""
    return frozenset(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


async def current_revisions(connection: AsyncConnection) -> frozenset[str]:
    """The revisions the database is at (empty when it was never migrated); reads only."""
    heads = await connection.run_sync(
        lambda sync: MigrationContext.configure(sync).get_current_heads()
    )
    return frozenset(heads)


def known_revision(revision: str) -> bool:
    """Whether `revision` is one of this release's migrations (a newer release's is not)."""
    try:
        return ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(revision) is not None
    except CommandError:
        return False
