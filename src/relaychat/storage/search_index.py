"""The full-text index's tables: made by migration 0010 and written only by its triggers
(see that migration for why), so they are outside the models' metadata and read-only here;
and the index's language: which one it was built with, and building it again in another.

What a language is on each database: PostgreSQL's text search configuration
(`search_config()`, which the triggers and the queries both call); SQLite's FTS5 tokenizer,
`unicode61` for `simple` and the Porter stemmer over it for `english` (FTS5 has no other).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, text
from sqlalchemy.engine import Connection

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


# (documents done, documents in all), called after each batch.
Progress = Callable[[int, int], None]

BATCH = 20_000

# FTS5 tokenizers by language: what `relaychat search reindex` builds on SQLite.
SQLITE_TOKENIZERS = {
    "simple": "unicode61 remove_diacritics 2",
    "english": "porter unicode61 remove_diacritics 2",
}


class UnknownSearchLanguage(ValueError):
    """The database has no text search configuration (or tokenizer) of this name."""


def built_language(connection: Connection) -> str:
    """The language the index was built with."""
    if connection.dialect.name == "postgresql":
        return str(connection.execute(text("SELECT search_config()::text")).scalar_one())
    made = connection.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'search_index'")
    ).scalar_one()
    return "english" if re.search(r"tokenize\s*=\s*'porter\b", made) else "simple"


def rebuild(connection: Connection, language: str, progress: Progress) -> None:
    """Every document indexed again in `language`, in the caller's transaction: readers see
    the old index until it commits; writers of messages wait (the index's table is locked
    against writes, so no document is written in the old language meanwhile)."""
    if connection.dialect.name == "postgresql":
        _set_postgresql_language(connection, language)
        rebuild_postgresql(connection, progress)
    else:
        _rebuild_sqlite(connection, language, progress)


def _set_postgresql_language(connection: Connection, language: str) -> None:
    known = connection.execute(
        text("SELECT cfgname FROM pg_ts_config WHERE cfgname = :name"), {"name": language}
    ).scalar()
    if known is None or not re.fullmatch(r"[a-z_][a-z0-9_]*", language):
        raise UnknownSearchLanguage(
            f"PostgreSQL has no text search configuration {language!r} (see \\dF in psql)"
        )
    connection.execute(text("LOCK TABLE search_documents IN SHARE MODE"))
    # Plans that inlined the old definition (the triggers', the queries') are invalidated.
    connection.execute(
        text(
            "CREATE OR REPLACE FUNCTION search_config() RETURNS regconfig LANGUAGE sql "
            f"IMMUTABLE PARALLEL SAFE AS $$ SELECT '{language}'::regconfig $$"
        )
    )


def rebuild_postgresql(connection: Connection, progress: Progress) -> None:
    """Every document written again by the database's own functions (migration 0013), in
    batches of document ids."""
    last = connection.execute(text("SELECT coalesce(max(id), 0) FROM search_documents")).scalar()
    total = int(last or 0)
    for low in range(0, total, BATCH):
        bounds = {"low": low, "high": low + BATCH}
        connection.execute(
            text(
                "UPDATE search_documents d "
                "SET document = search_message_document(m.text, m.metadata, d.user_id) "
                "FROM messages m WHERE m.id = d.message_id AND d.id > :low AND d.id <= :high"
            ),
            bounds,
        )
        connection.execute(
            text(
                "UPDATE search_documents d "
                "SET document = search_title_document(c.title, d.user_id) "
                "FROM conversations c WHERE d.message_id IS NULL AND c.id = d.conversation_id "
                "AND d.id > :low AND d.id <= :high"
            ),
            bounds,
        )
        progress(min(low + BATCH, total), total)


def _sqlite_sender(row: str) -> str:
    """A message's indexed sender metadata, as migration 0010's triggers write it."""
    source = f"json_extract({row}.metadata, '$.source')"
    phone = f"json_extract({row}.metadata, '$.phoneNumber')"
    national = f"substr({phone}, -10)"
    return f"trim(coalesce({source}, '') || ' ' || coalesce({phone} || ' ' || {national}, ''))"


def _rebuild_sqlite(connection: Connection, language: str, progress: Progress) -> None:
    """FTS5 fixes a table's tokenizer when it is made: a new table, filled from the rows."""
    tokenizer = SQLITE_TOKENIZERS.get(language)
    if tokenizer is None:
        raise UnknownSearchLanguage(
            f"SQLite's full-text index has no tokenizer for {language!r}: "
            f"{', '.join(SQLITE_TOKENIZERS)} only"
        )
    owner = "'u' || replace(d.user_id, '-', '')"
    # The triggers name the table, so they write into the new one from here on.
    for statement in [
        "DROP TABLE search_index",
        "CREATE VIRTUAL TABLE search_index USING fts5(body, sender, owner, content='', "
        f"tokenize='{tokenizer}')",
        "INSERT INTO search_index(search_index, rank) VALUES ('rank', 'bm25(1.0, 0.5, 0.0)')",
        "INSERT INTO search_index(search_index, rank) VALUES ('automerge', 8)",
        "INSERT INTO search_index(rowid, body, sender, owner) "
        f"SELECT d.id, c.title, '', {owner} FROM search_documents d "
        "JOIN conversations c ON c.id = d.conversation_id WHERE d.message_id IS NULL",
    ]:
        connection.execute(text(statement))
    last = connection.execute(text("SELECT coalesce(max(id), 0) FROM search_documents")).scalar()
    total = int(last or 0)
    for low in range(0, total, BATCH):
        connection.execute(
            text(
                "INSERT INTO search_index(rowid, body, sender, owner) "
                f"SELECT d.id, m.text, {_sqlite_sender('m')}, {owner} "
                "FROM search_documents d JOIN messages m ON m.id = d.message_id "
                "WHERE d.id > :low AND d.id <= :high ORDER BY d.id"
            ),
            {"low": low, "high": low + BATCH},
        )
        progress(min(low + BATCH, total), total)
