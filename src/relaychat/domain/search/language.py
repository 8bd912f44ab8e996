"""The search index's language against SEARCH_LANGUAGE: checked before serving, changed only
by `relaychat search reindex`.

Why a refusal at start-up rather than a rebuild there: rebuilding a large index takes
minutes (every document is written again, under a lock that holds message writes), and a
server's start is watched by supervisors and health checks that would kill it half-way and
roll the work back, again at each restart. So `serve` says what to run; the operator runs
it once, with its progress on the terminal, while the old index keeps answering searches.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from relaychat.storage.search_index import Progress, built_language, rebuild


class SearchLanguageChanged(Exception):
    """SEARCH_LANGUAGE names another language than the index was built with."""


async def check_language(connection: AsyncConnection, wanted: str) -> None:
    """Raise SearchLanguageChanged, saying what to run, unless the index is in `wanted`."""
    built = await connection.run_sync(built_language)
    if built != wanted:
        raise SearchLanguageChanged(
            f"the search index was built with SEARCH_LANGUAGE={built}, but SEARCH_LANGUAGE is "
            f"{wanted}: run `relaychat search reindex` to index every message again in "
            f"{wanted} (searches keep working meanwhile; new messages wait for it), or set "
            f"SEARCH_LANGUAGE={built}"
        )


async def reindex(connection: AsyncConnection, language: str, progress: Progress) -> str:
    """Every document indexed again in `language` (the caller commits); the language the
    index had before."""
    before = await connection.run_sync(built_language)
    await connection.run_sync(lambda sync: rebuild(sync, language, progress))
    return before
