"""The full-text index's tables: made by migration 0010 and written only by its triggers
(see that migration for why), so they are outside the models' metadata and read-only here."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

from relaychat.storage.types import UTCDateTime

_metadata = MetaData()

# One row per message and per titled conversation (`message_id` null); `id` is the
# document's rowid in SQLite's FTS5 table `search_index`.
SEARCH_DOCUMENTS = Table(
    "search_documents",
    _metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("message_id", String(36)),
    Column("conversation_id", String(128), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("role", String(16)),
    Column("created_at", UTCDateTime(timezone=True), nullable=False),
)


def is_search_table(name: str | None) -> bool:
    """Whether `name` is one of the index's tables (FTS5 adds `search_index_*` shadows)."""
    return bool(name) and (name == "search_documents" or str(name).startswith("search_index"))
