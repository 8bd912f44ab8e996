"""Migration 0010 back-fills the search index from the rows already there, and the
downgrade removes it cleanly, on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from sqlalchemy import insert, text

from relaychat.domain.search.search import SearchFilters, search
from relaychat.storage import migrate
from relaychat.storage.db import create_engine, create_sessionmaker
from relaychat.storage.models import Conversation, Message, User
from relaychat.storage.types import utcnow
from tests.support.backends import Backend, empty_database


async def test_upgrade_backfills_and_downgrade_removes(backend: Backend, tmp_path: Path) -> None:
    async with empty_database(backend, tmp_path) as url:
        await asyncio.to_thread(migrate.upgrade, url, "0009")
        engine = create_engine(url)
        try:
            now = utcnow()
            async with engine.begin() as conn:
                await conn.execute(
                    insert(User),
                    [{"id": "u1", "email": "a@example.com", "name": "A", "password_hash": "x"}],
                )
                await conn.execute(
                    insert(Conversation),
                    [
                        {"id": "c1", "user_id": "u1", "title": "Old times", "created_at": now},
                        {"id": "c2", "user_id": "u1", "title": None, "created_at": now},
                    ],
                )
                await conn.execute(
                    insert(Message),
                    [
                        {
                            "id": f"m{n}",
                            "conversation_id": "c1" if n % 2 else "c2",
                            "role": "user",
                            "text": f"backfilled message {n}",
                            "content": [],
                            "metadata": {"phoneNumber": "+14155550100"} if n == 3 else {},
                            "created_at": now,
                            "updated_at": now,
                        }
                        for n in range(7)
                    ],
                )
            await asyncio.to_thread(migrate.upgrade, url)
            sessions = create_sessionmaker(engine)

            async def found(q: str) -> set[str | None]:
                async with sessions() as session:
                    page = await search(
                        session, "u1", q, filters=SearchFilters(), limit=50, cursor=None
                    )
                return {hit.message_id or hit.conversation_id for hit in page.hits}

            assert await found("backfilled") == {f"m{n}" for n in range(7)}
            assert await found("times") == {"c1"}
            assert await found("4155550100") == {"m3"}
            # The triggers work after a back-fill too.
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM conversations WHERE id = 'c1'"))
            assert await found("backfilled") == {"m0", "m2", "m4", "m6"}

            await asyncio.to_thread(migrate.upgrade, url, "head")
            await asyncio.to_thread(_downgrade, url)
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM messages"))
            await asyncio.to_thread(migrate.upgrade, url)
            assert await found("backfilled") == set()
        finally:
            await engine.dispose()


def _downgrade(url: str) -> None:
    command.downgrade(migrate.alembic_config(url), "0009")
