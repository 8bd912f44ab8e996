"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from relaychat.storage.models import Base
from relaychat.storage.search_index import is_search_table
from tests.support.backends import Backend


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_server_default": False,
            # Raw DDL with triggers (migration 0010), deliberately outside the models.
            "include_name": lambda name, type_, _parents: (
                not (type_ == "table" and is_search_table(name))
            ),
        },
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(backend: Backend) -> None:
    async with backend.engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == []
