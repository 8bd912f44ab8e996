"""Full-text search over the signed-in user's messages, conversation titles and external
senders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from relaychat.domain.search.query import MAX_QUERY
from relaychat.domain.search.search import SearchFilters, search
from relaychat.http.deps import CurrentUser, SessionDep
from relaychat.statuses import MessageRole

router = APIRouter(tags=["search"])


class _FromDomain(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SnippetSegment(_FromDomain):
    text: str
    match: bool = Field(description="A searched word: show it marked (as text, not HTML).")


class SearchHitOut(_FromDomain):
    conversation_id: str
    conversation_title: str | None
    message_id: str | None = Field(
        description="The message to open; null when the conversation's title matched."
    )
    role: MessageRole | None
    created_at: datetime
    snippet: list[SnippetSegment]


class SearchResults(BaseModel):
    results: list[SearchHitOut]
    next_cursor: str | None


@router.get("/api/search")
async def search_(
    user: CurrentUser,
    session: SessionDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_QUERY,
            description='Words (all must match), "a phrase", prefix*, -excluded, +1 415 …',
        ),
    ],
    conversation_id: Annotated[str | None, Query(max_length=128)] = None,
    role: MessageRole | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> SearchResults:
    """Your messages and conversations matching `q`, best first, a page at a time."""
    page = await search(
        session,
        user.id,
        q,
        filters=SearchFilters(conversation_id, role, since, until),
        limit=limit,
        cursor=cursor,
    )
    return SearchResults(
        results=[SearchHitOut.model_validate(hit) for hit in page.hits],
        next_cursor=page.next_cursor,
    )
