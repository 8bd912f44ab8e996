"""PostgreSQL's owned lexemes (migration 0013): every lexeme of a document or a query gets
its owner's token in front, positions and weights kept, whatever the lexeme holds (SQLite's
index has an owner column instead)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.support.backends import Backend

CASES = [
    # The parsers' lexemes: the fast path.
    ("'a':6A 'b':7 'x':1,3B", "'tok12345a':6A 'tok12345b':7 'tok12345x':1,3B"),
    # A URL path keeps its quotes (doubled in the text form).
    ("'/it''s-''here''':4 'a':1", "'tok12345/it''s-''here''':4 'tok12345a':1"),
    # Lexemes holding spaces (a custom dictionary could make them): the regular expression.
    ("'a b':1 'c ':2 'd '' e':3", "'tok12345a b':1 'tok12345c ':2 'tok12345d '' e':3"),
    ("", ""),
]


@pytest.mark.parametrize(("document", "owned"), CASES)
async def test_every_lexeme_is_owned(postgres_db: Backend, document: str, owned: str) -> None:
    async with postgres_db.engine.connect() as conn:
        got = await conn.execute(
            text("SELECT search_owned(CAST(:d AS tsvector), 'tok12345')::text"), {"d": document}
        )
        assert got.scalar_one() == owned


async def test_a_query_is_owned_after_the_configuration_normalised_it(
    postgres_db: Backend,
) -> None:
    async with postgres_db.engine.connect() as conn:
        got = await conn.execute(
            text("SELECT search_owned_query(to_tsquery('english', :q), 'tok12345')::text"),
            {"q": "'Deploying' <-> 'servers' & !'x':* | ('y' & 'z')"},
        )
        assert got.scalar_one() == (
            "'tok12345deploy' <-> 'tok12345server' & !'tok12345x':* | 'tok12345y' & 'tok12345z'"
        )
