"""`relaychat search reindex` builds the index again in SEARCH_LANGUAGE, and `serve` refuses
an index built in another language, on both databases: English stems (PostgreSQL's
`english` configuration, SQLite's Porter tokenizer), so after the rebuild `deploy` finds
"deploying", in the messages already there and in those written afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from relaychat.domain.search.language import SearchLanguageChanged, check_language
from relaychat.domain.search.search import SearchFilters, search
from relaychat.storage import migrate
from relaychat.storage.db import create_engine, create_sessionmaker
from relaychat.storage.models import Conversation, Message, User
from relaychat.storage.types import utcnow
from tests.support.backends import Backend, empty_database
from tests.support.cli import relaychat_async


async def found(engine: AsyncEngine, q: str) -> set[str]:
    async with create_sessionmaker(engine)() as session:
        page = await search(session, "u1", q, filters=SearchFilters(), limit=50, cursor=None)
    return {hit.message_id or f"title:{hit.conversation_id}" for hit in page.hits}


async def write(engine: AsyncEngine, message_id: str, body: str) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(
            insert(Message),
            [
                {
                    "id": message_id,
                    "conversation_id": "c1",
                    "role": "user",
                    "text": body,
                    "content": [],
                    "metadata": {},
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )


async def language_is(engine: AsyncEngine, language: str) -> bool:
    async with engine.connect() as conn:
        try:
            await check_language(conn, language)
        except SearchLanguageChanged:
            return False
    return True


async def test_reindex_in_another_language(backend: Backend, tmp_path: Path) -> None:
    async with empty_database(backend, tmp_path) as url:
        await asyncio.to_thread(migrate.upgrade, url)
        env = {"DATABASE_URL": url, "RELAYCHAT_DATA_DIR": str(tmp_path / "data")}
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(User),
                    [{"id": "u1", "email": "a@example.com", "name": "A", "password_hash": "x"}],
                )
                await conn.execute(
                    insert(Conversation),
                    [{"id": "c1", "user_id": "u1", "title": "Meetings", "created_at": utcnow()}],
                )
            await write(engine, "m1", "We were deploying the servers")
            assert await found(engine, "deploy") == set()
            assert await found(engine, "deploying") == {"m1"}
            assert await language_is(engine, "simple")

            # `serve` names the command rather than serving an index in the old language.
            refused = await relaychat_async(
                {**env, "SEARCH_LANGUAGE": "english"}, "serve", "--host", "256.0.0.1"
            )
            assert refused.exit_code == 1
            assert "run `relaychat search reindex`" in refused.stderr
            assert "SEARCH_LANGUAGE=simple" in refused.stderr

            rebuilt = await relaychat_async(
                {**env, "SEARCH_LANGUAGE": "english"}, "search", "reindex"
            )
            assert rebuilt.exit_code == 0, rebuilt.stderr
            assert rebuilt.stdout == "search index rebuilt in english (it was in simple)\n"
            assert "documents" in rebuilt.stderr
            assert await language_is(engine, "english")
            assert not await language_is(engine, "simple")

            # The documents already there, and titles, are found by their stems.
            assert await found(engine, "deploy") == {"m1"}
            assert await found(engine, "deploys") == {"m1"}
            assert await found(engine, "meeting") == {"title:c1"}
            assert await found(engine, "server -deployed") == set()
            # And the triggers write new documents in the new language.
            await write(engine, "m2", "the server is running")
            assert await found(engine, "run") == {"m2"}
            assert await found(engine, "servers") == {"m1", "m2"}
        finally:
            await engine.dispose()


async def test_an_unknown_language_is_refused_and_the_index_kept(
    backend: Backend, tmp_path: Path
) -> None:
    language = "klingon"
    async with empty_database(backend, tmp_path) as url:
        await asyncio.to_thread(migrate.upgrade, url)
        env = {"DATABASE_URL": url, "RELAYCHAT_DATA_DIR": str(tmp_path / "data")}
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(User),
                    [{"id": "u1", "email": "a@example.com", "name": "A", "password_hash": "x"}],
                )
                await conn.execute(
                    insert(Conversation),
                    [{"id": "c1", "user_id": "u1", "title": None, "created_at": utcnow()}],
                )
            await write(engine, "m1", "kept as it was")
            result = await relaychat_async(
                {**env, "SEARCH_LANGUAGE": language}, "search", "reindex"
            )
            assert result.exit_code == 1
            assert repr(language) in result.stderr
            assert await language_is(engine, "simple")
            assert await found(engine, "kept") == {"m1"}
        finally:
            await engine.dispose()


async def test_a_new_database_is_indexed_in_search_language(
    backend: Backend, tmp_path: Path
) -> None:
    async with empty_database(backend, tmp_path) as url:
        env = {
            "DATABASE_URL": url,
            "RELAYCHAT_DATA_DIR": str(tmp_path / "data"),
            "SEARCH_LANGUAGE": "english",
        }
        upgraded = await relaychat_async(env, "db", "upgrade")
        assert upgraded.exit_code == 0, upgraded.stderr
        engine = create_engine(url)
        try:
            assert await language_is(engine, "english")
        finally:
            await engine.dispose()
