"""full-text search: search_documents (one row per message and per titled conversation) and
its index (SQLite FTS5 `search_index`; PostgreSQL tsvector + GIN), kept by triggers

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 12:50:00

Why triggers: messages are written by the ORM (edits, deletions), by Core statements (the
gateway's group commit, replies started and streamed, the channel senders) and by
cascades (a conversation's deletion removes its messages inside the database). A trigger
sees every one of them, in the writer's own transaction, so the index can never lag or
miss a path added later; doing it in the domain would mean remembering it in each place.

The document of a message: its text, and its sender metadata (`source`, `phoneNumber`,
and the phone's last ten digits so a national number finds it). A titled conversation is
a document of its own (its title), so renaming one rewrites one row, not every message.
`owner` (SQLite) / `user_id` (PostgreSQL, a GIN column through btree_gin) puts the
owner inside the index, so a query reads only its owner's postings.

PostgreSQL's text search configuration comes from SEARCH_LANGUAGE when this migration
runs and is frozen into the function `search_config()`, which both the trigger and the
queries call: the index and the queries can never disagree.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import Connection

from relaychat.settings import Settings

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 50_000
# Fewer messages than this back-fill without a word on the terminal.
LARGE = 100_000

# -- SQLite -------------------------------------------------------------------------------


def _sqlite_sender(row: str) -> str:
    """The indexed sender metadata of message `row` (NEW, OLD, m); the same expression
    must write and delete an entry of a contentless FTS5 table."""
    source = f"json_extract({row}.metadata, '$.source')"
    phone = f"json_extract({row}.metadata, '$.phoneNumber')"
    national = f"substr({phone}, -10)"
    return f"trim(coalesce({source}, '') || ' ' || coalesce({phone} || ' ' || {national}, ''))"


def _sqlite_owner(user_id: str) -> str:
    return f"'u' || replace({user_id}, '-', '')"


_SQLITE_TABLES = [
    """CREATE TABLE search_documents (
        id INTEGER PRIMARY KEY,
        message_id VARCHAR(36),
        conversation_id VARCHAR(128) NOT NULL,
        user_id VARCHAR(36) NOT NULL,
        role VARCHAR(16),
        created_at DATETIME NOT NULL
    )""",
    # Contentless: the text stays in messages and conversations only. Entries are removed
    # with FTS5's 'delete' command, given the values they were indexed with (triggers have
    # them in OLD).
    """CREATE VIRTUAL TABLE search_index USING fts5(
        body, sender, owner, content='', tokenize='unicode61 remove_diacritics 2'
    )""",
    # The owner column only filters: it weighs nothing in the ranking.
    "INSERT INTO search_index(search_index, rank) VALUES ('rank', 'bm25(1.0, 0.5, 0.0)')",
    # Every commit adds a segment; merging 8 of a level rather than 4 halves the merge work
    # on the write path (bench.search) for a few more segments to read per query.
    "INSERT INTO search_index(search_index, rank) VALUES ('automerge', 8)",
]

_SQLITE_INDEXES = [
    "CREATE UNIQUE INDEX ux_search_documents_message ON search_documents (message_id)",
    "CREATE UNIQUE INDEX ux_search_documents_title ON search_documents (conversation_id) "
    "WHERE message_id IS NULL",
]


def _sqlite_triggers() -> list[str]:
    owner = _sqlite_owner("d.user_id")

    def unindex(row: str) -> str:
        return f"""INSERT INTO search_index(search_index, rowid, body, sender, owner)
            SELECT 'delete', d.id, {row}.text, {_sqlite_sender(row)}, {owner}
            FROM search_documents d WHERE d.message_id = {row}.id;"""

    def index(row: str) -> str:
        return f"""INSERT INTO search_index(rowid, body, sender, owner)
            SELECT d.id, {row}.text, {_sqlite_sender(row)}, {owner}
            FROM search_documents d WHERE d.message_id = {row}.id;"""

    title_doc = "FROM search_documents d WHERE d.conversation_id = {c}.id AND d.message_id IS NULL"
    return [
        # The document's id is the rowid just inserted: no lookup by message id.
        f"""CREATE TRIGGER search_message_insert AFTER INSERT ON messages BEGIN
            INSERT INTO search_documents (message_id, conversation_id, user_id, role, created_at)
            SELECT NEW.id, NEW.conversation_id, c.user_id, NEW.role, NEW.created_at
            FROM conversations c WHERE c.id = NEW.conversation_id;
            INSERT INTO search_index(rowid, body, sender, owner)
            SELECT last_insert_rowid(), NEW.text, {_sqlite_sender("NEW")},
                {_sqlite_owner("c.user_id")}
            FROM conversations c WHERE c.id = NEW.conversation_id;
        END""",
        f"""CREATE TRIGGER search_message_update AFTER UPDATE OF text, metadata ON messages
        WHEN OLD.text IS NOT NEW.text OR OLD.metadata IS NOT NEW.metadata BEGIN
            {unindex("OLD")}
            {index("NEW")}
        END""",
        f"""CREATE TRIGGER search_message_delete AFTER DELETE ON messages BEGIN
            {unindex("OLD")}
            DELETE FROM search_documents WHERE message_id = OLD.id;
        END""",
        f"""CREATE TRIGGER search_title_insert AFTER INSERT ON conversations
        WHEN coalesce(NEW.title, '') != '' BEGIN
            INSERT INTO search_documents (message_id, conversation_id, user_id, role, created_at)
            VALUES (NULL, NEW.id, NEW.user_id, NULL, NEW.created_at);
            INSERT INTO search_index(rowid, body, sender, owner)
            VALUES (last_insert_rowid(), NEW.title, '', {_sqlite_owner("NEW.user_id")});
        END""",
        f"""CREATE TRIGGER search_title_update AFTER UPDATE OF title ON conversations
        WHEN OLD.title IS NOT NEW.title BEGIN
            INSERT INTO search_index(search_index, rowid, body, sender, owner)
            SELECT 'delete', d.id, OLD.title, '', {owner} {title_doc.format(c="OLD")};
            DELETE FROM search_documents WHERE conversation_id = OLD.id AND message_id IS NULL;
            INSERT INTO search_documents (message_id, conversation_id, user_id, role, created_at)
            SELECT NULL, NEW.id, NEW.user_id, NULL, NEW.created_at
            WHERE coalesce(NEW.title, '') != '';
            INSERT INTO search_index(rowid, body, sender, owner)
            SELECT d.id, NEW.title, '', {owner} {title_doc.format(c="NEW")};
        END""",
        f"""CREATE TRIGGER search_title_delete AFTER DELETE ON conversations BEGIN
            INSERT INTO search_index(search_index, rowid, body, sender, owner)
            SELECT 'delete', d.id, OLD.title, '', {owner} {title_doc.format(c="OLD")};
            DELETE FROM search_documents WHERE conversation_id = OLD.id AND message_id IS NULL;
        END""",
    ]


def _sqlite_backfill(connection: Connection) -> None:
    connection.execute(
        text(
            "INSERT INTO search_documents (message_id, conversation_id, user_id, role, created_at) "
            "SELECT NULL, id, user_id, NULL, created_at FROM conversations "
            "WHERE coalesce(title, '') != ''"
        )
    )
    connection.execute(
        text(
            "INSERT INTO search_index(rowid, body, sender, owner) "
            f"SELECT d.id, c.title, '', {_sqlite_owner('d.user_id')} FROM search_documents d "
            "JOIN conversations c ON c.id = d.conversation_id"
        )
    )
    total = connection.execute(text("SELECT max(rowid) FROM messages")).scalar() or 0
    for start in range(0, total, BATCH):
        bounds = {"low": start, "high": start + BATCH}
        first = connection.execute(
            text("SELECT coalesce(max(id), 0) FROM search_documents")
        ).scalar()
        connection.execute(
            text(
                "INSERT INTO search_documents "
                "(message_id, conversation_id, user_id, role, created_at) "
                "SELECT m.id, m.conversation_id, c.user_id, m.role, m.created_at "
                "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                "WHERE m.rowid > :low AND m.rowid <= :high ORDER BY m.rowid"
            ),
            bounds,
        )
        connection.execute(
            text(
                "INSERT INTO search_index(rowid, body, sender, owner) "
                f"SELECT d.id, m.text, {_sqlite_sender('m')}, {_sqlite_owner('d.user_id')} "
                "FROM search_documents d JOIN messages m ON m.id = d.message_id "
                "WHERE d.id > :first ORDER BY d.id"
            ),
            {"first": first},
        )
        _progress(min(start + BATCH, total), total)


# -- PostgreSQL ---------------------------------------------------------------------------


def _pg_document(row: str) -> str:
    """The tsvector of message `row`: its text (weight A), its sender metadata (B)."""
    phone = f"({row}.metadata ->> 'phoneNumber')"
    sender = (
        f"concat_ws(' ', {row}.metadata ->> 'source', translate({phone}, '+:', '  '), "
        f"right({phone}, 10))"
    )
    return (
        f"setweight(to_tsvector(search_config(), coalesce({row}.text, '')), 'A') || "
        f"setweight(to_tsvector(search_config(), {sender}), 'B')"
    )


def _pg_statements(language: str) -> list[str]:
    return [
        # GIN over (user_id, document): a query reads only its owner's postings.
        "CREATE EXTENSION IF NOT EXISTS btree_gin",
        # Inlined by the planner: a constant in both the trigger and the queries.
        f"""CREATE FUNCTION search_config() RETURNS regconfig LANGUAGE sql IMMUTABLE
            PARALLEL SAFE AS $$ SELECT '{language}'::regconfig $$""",
        """CREATE TABLE search_documents (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            message_id VARCHAR(36),
            conversation_id VARCHAR(128) NOT NULL,
            user_id VARCHAR(36) NOT NULL,
            role VARCHAR(16),
            created_at TIMESTAMP WITH TIME ZONE NOT NULL,
            document TSVECTOR NOT NULL
        )""",
    ]


_PG_INDEXES = [
    "CREATE UNIQUE INDEX ux_search_documents_message ON search_documents (message_id)",
    "CREATE UNIQUE INDEX ux_search_documents_title ON search_documents (conversation_id) "
    "WHERE message_id IS NULL",
    "CREATE INDEX ix_search_documents_match ON search_documents USING gin (user_id, document)",
]


def _pg_triggers() -> list[str]:
    title = "setweight(to_tsvector(search_config(), NEW.title), 'A')"
    return [
        f"""CREATE FUNCTION search_message_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                DELETE FROM search_documents WHERE message_id = OLD.id;
            ELSIF TG_OP = 'UPDATE' THEN
                UPDATE search_documents SET document = {_pg_document("NEW")}
                WHERE message_id = NEW.id;
            ELSE
                INSERT INTO search_documents
                    (message_id, conversation_id, user_id, role, created_at, document)
                SELECT NEW.id, NEW.conversation_id, c.user_id, NEW.role, NEW.created_at,
                    {_pg_document("NEW")}
                FROM conversations c WHERE c.id = NEW.conversation_id;
            END IF;
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER search_message_insert AFTER INSERT ON messages
            FOR EACH ROW EXECUTE FUNCTION search_message_changed()""",
        """CREATE TRIGGER search_message_update AFTER UPDATE OF text, metadata ON messages
            FOR EACH ROW WHEN (OLD.text IS DISTINCT FROM NEW.text
                OR OLD.metadata IS DISTINCT FROM NEW.metadata)
            EXECUTE FUNCTION search_message_changed()""",
        """CREATE TRIGGER search_message_delete AFTER DELETE ON messages
            FOR EACH ROW EXECUTE FUNCTION search_message_changed()""",
        f"""CREATE FUNCTION search_title_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('DELETE', 'UPDATE') THEN
                DELETE FROM search_documents
                WHERE conversation_id = OLD.id AND message_id IS NULL;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') AND coalesce(NEW.title, '') <> '' THEN
                INSERT INTO search_documents
                    (message_id, conversation_id, user_id, role, created_at, document)
                VALUES (NULL, NEW.id, NEW.user_id, NULL, NEW.created_at, {title});
            END IF;
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER search_title_insert AFTER INSERT ON conversations
            FOR EACH ROW EXECUTE FUNCTION search_title_changed()""",
        """CREATE TRIGGER search_title_update AFTER UPDATE OF title ON conversations
            FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title)
            EXECUTE FUNCTION search_title_changed()""",
        """CREATE TRIGGER search_title_delete AFTER DELETE ON conversations
            FOR EACH ROW EXECUTE FUNCTION search_title_changed()""",
    ]


def _pg_backfill(connection: Connection) -> None:
    connection.execute(
        text(
            "INSERT INTO search_documents "
            "(message_id, conversation_id, user_id, role, created_at, document) "
            "SELECT NULL, id, user_id, NULL, created_at, "
            "setweight(to_tsvector(search_config(), title), 'A') FROM conversations "
            "WHERE coalesce(title, '') <> ''"
        )
    )
    total = connection.execute(text("SELECT count(*) FROM messages")).scalar() or 0
    last = ""
    done = 0
    while True:
        row = connection.execute(
            text(
                "WITH batch AS (SELECT id FROM messages WHERE id > :last ORDER BY id LIMIT :n), "
                "written AS (INSERT INTO search_documents "
                "(message_id, conversation_id, user_id, role, created_at, document) "
                "SELECT m.id, m.conversation_id, c.user_id, m.role, m.created_at, "
                f"{_pg_document('m')} FROM messages m "
                "JOIN batch b ON b.id = m.id JOIN conversations c ON c.id = m.conversation_id) "
                "SELECT max(id), count(*) FROM batch"
            ),
            {"last": last, "n": BATCH},
        ).one()
        if not row[1]:
            break
        last, done = row[0], done + row[1]
        _progress(done, total)


def _progress(done: int, total: int) -> None:
    # Migrations run from `relaychat db upgrade` and `serve`: a long back-fill says where
    # it stands rather than looking hung.
    if total >= LARGE:
        print(f"search index: {done:,}/{total:,} messages", file=sys.stderr, flush=True)


def _language() -> str:
    language = Settings().search_language
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", language):
        raise ValueError(f"SEARCH_LANGUAGE {language!r} is not a text search configuration")
    return language


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        for statement in _pg_statements(_language()):
            connection.execute(text(statement))
        _pg_backfill(connection)
        for statement in _PG_INDEXES + _pg_triggers():
            connection.execute(text(statement))
    else:
        for statement in _SQLITE_TABLES:
            connection.execute(text(statement))
        _sqlite_backfill(connection)
        for statement in _SQLITE_INDEXES + _sqlite_triggers():
            connection.execute(text(statement))


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        for statement in [
            "DROP TRIGGER search_title_delete ON conversations",
            "DROP TRIGGER search_title_update ON conversations",
            "DROP TRIGGER search_title_insert ON conversations",
            "DROP TRIGGER search_message_delete ON messages",
            "DROP TRIGGER search_message_update ON messages",
            "DROP TRIGGER search_message_insert ON messages",
            "DROP FUNCTION search_title_changed()",
            "DROP FUNCTION search_message_changed()",
            "DROP TABLE search_documents",
            "DROP FUNCTION search_config()",
        ]:
            connection.execute(text(statement))
        return
    for name in [
        "search_title_delete",
        "search_title_update",
        "search_title_insert",
        "search_message_delete",
        "search_message_update",
        "search_message_insert",
    ]:
        connection.execute(text(f"DROP TRIGGER {name}"))
    connection.execute(text("DROP TABLE search_index"))
    connection.execute(text("DROP TABLE search_documents"))
