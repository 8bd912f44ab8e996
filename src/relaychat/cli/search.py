"""`relaychat search reindex`: build the search index again in SEARCH_LANGUAGE."""

from __future__ import annotations

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.cli._common import error_exit, load_settings, run_in_session
from relaychat.domain.search.language import reindex
from relaychat.storage.search_index import UnknownSearchLanguage

search_app = typer.Typer(help="The full-text search index.")


def _progress(done: int, total: int) -> None:
    typer.echo(f"search index: {done:,}/{total:,} documents", err=True)


@search_app.command("reindex")
def search_reindex() -> None:
    """Index every message and title again in SEARCH_LANGUAGE, in one transaction: searches
    use the old index until it is done; writing messages waits for it."""
    settings = load_settings()
    language = settings.search_language

    async def work(session: AsyncSession) -> str:
        connection = await session.connection()
        try:
            before = await reindex(connection, language, _progress)
        except UnknownSearchLanguage as exc:
            error_exit(str(exc))
        await session.commit()
        return before

    before = run_in_session(settings, work)
    typer.echo(f"search index rebuilt in {language} (it was in {before})")
