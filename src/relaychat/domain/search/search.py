"""`GET /api/search`: the caller's documents matching a query, best first, a page at a time.

Scoped twice to the caller: the index itself is asked for the owner's postings only (the
FTS5 `owner` column; on PostgreSQL every lexeme carries its owner's token, migration 0013,
so a word or a prefix is a key range of the owner's own), and the documents' `user_id` is
filtered again in the same statement. Pages are keyset: the sort key (FTS5's
bm25, or minus PostgreSQL's ts_rank, so lower is better on both) and the document id.

The statements are SQL text: FTS5's virtual table and its hidden `rank` column have no
SQLAlchemy construct, and each backend's statement reads best whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.cursors import decode_rank_cursor, encode_rank_cursor
from relaychat.domain.search.query import SearchQuery, fts5_match, owner_token, parse, tsquery
from relaychat.domain.search.snippets import Segment, plain, snippet
from relaychat.statuses import MessageRole
from relaychat.storage.tables import MESSAGES
from relaychat.storage.types import UTCDateTime


@dataclass(frozen=True)
class SearchFilters:
    conversation_id: str | None = None
    role: MessageRole | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class SearchHit:
    """A matched message, or a conversation matched by its title (`message_id` None)."""

    conversation_id: str
    conversation_title: str | None
    message_id: str | None
    role: MessageRole | None
    created_at: datetime
    snippet: list[Segment]


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    next_cursor: str | None


_SQLITE = """
SELECT d.id, d.message_id, d.conversation_id, d.role, d.created_at, search_index.rank AS key
FROM search_index JOIN search_documents d ON d.id = search_index.rowid
WHERE search_index MATCH :match AND d.user_id = :user_id {filters}
ORDER BY key, d.id LIMIT :limit
"""
_POSTGRESQL = """
SELECT * FROM (
    SELECT d.id, d.message_id, d.conversation_id, d.role, d.created_at,
        -ts_rank(d.document, q.query)::float8 AS key
    FROM search_documents d,
        search_owned_query(to_tsquery(search_config(), :tsquery), search_owner(:user_id))
            AS q(query)
    WHERE d.user_id = :user_id AND d.document @@ q.query {filters}
) AS ranked
WHERE true {after}
ORDER BY key, id LIMIT :limit
"""
# The page, with what its snippets are made of: the texts and titles of its rows only, read
# in the same round trip (a round trip is most of a query's time on a busy server).
_PAGE = """
SELECT page.*, m.text, m.metadata, c.title
FROM ({ranked}) AS page
LEFT JOIN messages m ON m.id = page.message_id
LEFT JOIN conversations c ON c.id = page.conversation_id
ORDER BY page.key, page.id
"""


async def search(
    session: AsyncSession,
    user_id: str,
    q: str,
    *,
    filters: SearchFilters,
    limit: int,
    cursor: str | None,
) -> SearchPage:
    """One page of `user_id`'s messages and conversations matching `q`, best first."""
    query = parse(q)
    after = decode_rank_cursor(cursor) if cursor else None
    params: dict[str, Any] = {"user_id": user_id, "limit": limit + 1}
    clauses = []
    if filters.conversation_id is not None:
        clauses.append("AND d.conversation_id = :conversation_id")
        params["conversation_id"] = filters.conversation_id
    if filters.role is not None:
        clauses.append("AND d.role = :role")
        params["role"] = filters.role.value
    dates = UTCDateTime(timezone=True)
    if filters.since is not None:
        clauses.append("AND d.created_at >= :since")
        params["since"] = filters.since
    if filters.until is not None:
        clauses.append("AND d.created_at < :until")
        params["until"] = filters.until
    if after is not None:
        params["after_key"], params["after_id"] = after
    if session.get_bind().dialect.name == "postgresql":
        params["tsquery"] = tsquery(query)
        keyset = "AND (key > :after_key OR (key = :after_key AND id > :after_id))"
        statement = _POSTGRESQL.format(filters=" ".join(clauses), after=keyset if after else "")
    else:
        params["match"] = fts5_match(query, owner_token(user_id))
        if after is not None:
            # FTS5's rank cannot be named by its alias in WHERE.
            clauses.append(
                "AND (search_index.rank > :after_key "
                "OR (search_index.rank = :after_key AND d.id > :after_id))"
            )
        statement = _SQLITE.format(filters=" ".join(clauses))
    typed = text(_PAGE.format(ranked=statement)).bindparams(
        *(bindparam(name, type_=dates) for name in ("since", "until") if name in params)
    )
    columns = typed.columns(created_at=dates, metadata=MESSAGES.c.metadata.type)
    rows = (await session.execute(columns, params)).all()
    page, more = rows[:limit], len(rows) > limit
    hits = [_hit(row, query) for row in page]
    next_cursor = encode_rank_cursor(page[-1].key, page[-1].id) if more and page else None
    return SearchPage(hits, next_cursor)


def _hit(row: Row[Any], query: SearchQuery) -> SearchHit:
    """A found document with its conversation's title and a marked snippet."""
    if row.message_id is not None:
        body = row.text or ""
        marked = snippet(body, query) or _sender_snippet(row.metadata, query)
    else:
        body = ""
        marked = snippet(row.title or "", query) or plain(row.title or "")
    return SearchHit(
        conversation_id=row.conversation_id,
        conversation_title=row.title,
        message_id=row.message_id,
        role=MessageRole(row.role) if row.role else None,
        created_at=row.created_at,
        snippet=marked or plain(body),
    )


def _sender_snippet(metadata: object, query: SearchQuery) -> list[Segment] | None:
    """An external message found by its sender: `source · phone`, marked."""
    if not isinstance(metadata, dict):
        return None
    parts = [str(metadata[key]) for key in ("source", "phoneNumber") if metadata.get(key)]
    return snippet(" · ".join(parts), query) if parts else None
