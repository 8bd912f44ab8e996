"""search on PostgreSQL: every lexeme behind its owner's token, one GIN over the document;
the documents written by SQL functions that the triggers and `relaychat search reindex` share

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 15:20:00

Why: 0010's GIN over `(user_id, document)` answers a word by intersecting the owner's
posting list with the word's, which is cheap, but a prefix (`deploy*`, a phone number's
digits) is a partial match that GIN gathers for every owner before the intersection: at a
million messages `krak*` read ~400,000 postings to return the person's 21 (58 ms alone).
With `'<token>deploy'` as the lexeme, each person's words are a key range of their own: a
word, a phrase, a prefix or an exclusion reads that owner's postings only.

The token is 8 hex digits of md5(user id), fixed length so a prefix stays inside one
owner's range. Two owners whose tokens collide would only read each other's postings: every
query still filters `user_id` in the same statement. ts_rank sees the same positions and
weights, so the ranking is unchanged; the query side prefixes its lexemes the same way
(`search_owned_query`), after the configuration has normalised (stemmed) them.

SQLite's index keeps its shape (its FTS5 `owner` column already narrows a prefix to the
owner); it gets the tokenizer of SEARCH_LANGUAGE when that is `english`.
The text search configuration stays the one the index was built with (`search_config()`);
`relaychat search reindex` changes it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from relaychat.settings import Settings
from relaychat.storage.search_index import (
    SQLITE_TOKENIZERS,
    built_language,
    rebuild,
    rebuild_postgresql,
)

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Fewer documents than this re-index without a word on the terminal.
LARGE = 100_000

# A lexeme in the text form of a tsvector or tsquery: quoted, a quote inside doubled.
_LEXEME = r"'((?:[^']|'')*)'"

_FUNCTIONS = [
    """CREATE FUNCTION search_owner(user_id varchar) RETURNS text LANGUAGE sql IMMUTABLE
        PARALLEL SAFE AS $$ SELECT substr(md5(user_id), 1, 8) $$""",
    # Through the text form: the one way to rename lexemes and keep positions and weights.
    # Its entries are `'lexeme':positions`, one space apart: when " '" occurs only between
    # entries (no lexeme holds a space, as the parsers make them) a plain replace is right,
    # at a fraction of the regular expression's cost on every message written.
    # (A single SELECT with no FROM, so that the planner inlines it: measured twice as fast.)
    f"""CREATE FUNCTION search_owned(document tsvector, owner text) RETURNS tsvector
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE
            WHEN length(document) = 0 THEN document
            WHEN length(document::text) - length(replace(document::text, ' ''', ''))
                = 2 * (length(document) - 1)
            THEN ('''' || owner || replace(substr(document::text, 2), ' ''', ' ''' || owner))
                ::tsvector
            ELSE regexp_replace(document::text, $re${_LEXEME}$re$, '''' || owner || '\\1''',
                'g')::tsvector
        END $$""",
    f"""CREATE FUNCTION search_owned_query(query tsquery, owner text) RETURNS tsquery
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT regexp_replace(query::text, $re${_LEXEME}$re$, '''' || owner || '\\1''', 'g')
            ::tsquery $$""",
    # A message's document: its text (weight A), its sender metadata (B), as 0010 had it.
    """CREATE FUNCTION search_message_document(body text, metadata jsonb, user_id varchar)
        RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT search_owned(
            setweight(to_tsvector(search_config(), coalesce(body, '')), 'A')
            || setweight(to_tsvector(search_config(), concat_ws(' ', metadata ->> 'source',
                translate(metadata ->> 'phoneNumber', '+:', '  '),
                right(metadata ->> 'phoneNumber', 10))), 'B'),
            search_owner(user_id)) $$""",
    """CREATE FUNCTION search_title_document(title text, user_id varchar)
        RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT search_owned(setweight(to_tsvector(search_config(), title), 'A'),
            search_owner(user_id)) $$""",
]


def _triggers(message: str, title: str) -> list[str]:
    """The trigger functions of 0010, with the documents written by `message` and `title`
    (SQL expressions over NEW and the document's `user_id`)."""
    return [
        f"""CREATE OR REPLACE FUNCTION search_message_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                DELETE FROM search_documents WHERE message_id = OLD.id;
            ELSIF TG_OP = 'UPDATE' THEN
                UPDATE search_documents SET document = {message.format(user="user_id")}
                WHERE message_id = NEW.id;
            ELSE
                INSERT INTO search_documents
                    (message_id, conversation_id, user_id, role, created_at, document)
                SELECT NEW.id, NEW.conversation_id, c.user_id, NEW.role, NEW.created_at,
                    {message.format(user="c.user_id")}
                FROM conversations c WHERE c.id = NEW.conversation_id;
            END IF;
            RETURN NULL;
        END $$""",
        f"""CREATE OR REPLACE FUNCTION search_title_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
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
    ]


_OWNED = (
    "search_message_document(NEW.text, NEW.metadata, {user})",
    "search_title_document(NEW.title, NEW.user_id)",
)
# 0010's documents, for the downgrade.
_PLAIN_MESSAGE = (
    "setweight(to_tsvector(search_config(), coalesce({row}.text, '')), 'A') || "
    "setweight(to_tsvector(search_config(), concat_ws(' ', {row}.metadata ->> 'source', "
    "translate({row}.metadata ->> 'phoneNumber', '+:', '  '), "
    "right({row}.metadata ->> 'phoneNumber', 10))), 'B')"
)
_PLAIN_TITLE = "setweight(to_tsvector(search_config(), {row}.title), 'A')"


def _progress(done: int, total: int) -> None:
    if total >= LARGE:
        print(f"search index: {done:,}/{total:,} documents", file=sys.stderr, flush=True)


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        # 0010 made SQLite's index with unicode61 whatever SEARCH_LANGUAGE said: a database
        # made with `english` gets its Porter tokenizer here (another name is left for
        # `serve` to refuse, saying why).
        language = Settings().search_language
        if language in SQLITE_TOKENIZERS and built_language(connection) != language:
            rebuild(connection, language, _progress)
        return
    for statement in _FUNCTIONS + _triggers(*_OWNED):
        connection.execute(text(statement))
    # Built again after the rewrite: faster than updating it row by row, and unbloated.
    connection.execute(text("DROP INDEX ix_search_documents_match"))
    rebuild_postgresql(connection, _progress)
    connection.execute(
        text("CREATE INDEX ix_search_documents_match ON search_documents USING gin (document)")
    )


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    message = _PLAIN_MESSAGE.format(row="NEW")
    for statement in _triggers(message, _PLAIN_TITLE.format(row="NEW")):
        connection.execute(text(statement))
    connection.execute(text("DROP INDEX ix_search_documents_match"))
    connection.execute(
        text(
            f"UPDATE search_documents d SET document = {_PLAIN_MESSAGE.format(row='m')} "
            "FROM messages m WHERE m.id = d.message_id"
        )
    )
    connection.execute(
        text(
            f"UPDATE search_documents d SET document = {_PLAIN_TITLE.format(row='c')} "
            "FROM conversations c WHERE d.message_id IS NULL AND c.id = d.conversation_id"
        )
    )
    connection.execute(
        text(
            "CREATE INDEX ix_search_documents_match ON search_documents "
            "USING gin (user_id, document)"
        )
    )
    for name in [
        "search_title_document(text, varchar)",
        "search_message_document(text, jsonb, varchar)",
        "search_owned_query(tsquery, text)",
        "search_owned(tsvector, text)",
        "search_owner(varchar)",
    ]:
        connection.execute(text(f"DROP FUNCTION {name}"))
