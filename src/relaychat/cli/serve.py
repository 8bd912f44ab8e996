"""`relaychat serve`: migrate the database, check the stores, then serve HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer
from redis.asyncio import Redis

from relaychat.cli._common import fail, load_settings, one_line
from relaychat.crypto import SecretBox
from relaychat.domain.outbound.webhooks import check_encryption_key
from relaychat.domain.search.language import check_language
from relaychat.llm.config import load_config
from relaychat.llm.mcp.config import load_mcp_config
from relaychat.metrics import shared_between_workers
from relaychat.settings import PlaceholderSecretError, Settings
from relaychat.storage import migrate
from relaychat.storage.db import create_engine, create_sessionmaker


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env PORT].")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Migrate the database, then serve HTTP."""
    # Imported here: only `serve` needs the server, and every other command (and
    # `relaychat --help`) would pay for importing it.
    import uvicorn

    settings = load_settings()
    if workers > 1 and not settings.redis_url:
        # Rate limits, events and aborts would silently become per-process: refuse instead.
        fail(
            "configuration error: --workers > 1 needs REDIS_URL (shared rate limits, events "
            "and aborts); without it each worker would count and broadcast on its own"
        )
    try:
        # Resolve (or generate) the secrets once, before workers race to create them.
        settings.resolved_jwt_secret()
        box = SecretBox(settings.resolved_encryption_keys())
        # What the app would otherwise find at start-up, where uvicorn prints a traceback.
        load_config(settings.config_path)
        load_mcp_config(settings.config_path)
    except (PlaceholderSecretError, ValueError) as exc:
        fail(f"configuration error: {one_line(exc)}")
    try:
        migrate.upgrade(settings.effective_database_url)
        asyncio.run(_check_stores(settings, box))
    except Exception as exc:  # any failure to reach or read the stores: one line, exit 1
        fail(f"cannot start: {one_line(exc)}", code=1)
    with contextlib.ExitStack() as stack:
        if workers > 1:
            # Every worker's metrics in each scrape (relaychat/metrics.py).
            stack.enter_context(shared_between_workers())
        uvicorn.run(
            "relaychat.app:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            log_level="info",
            # Open event streams would otherwise hold shutdown (and generation cleanup) forever.
            timeout_graceful_shutdown=5,
        )


async def _check_stores(settings: Settings, box: SecretBox) -> None:
    """The stored secrets open with this ENCRYPTION_KEY, the search index is in
    SEARCH_LANGUAGE, and Redis answers when configured."""
    engine = create_engine(settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await check_encryption_key(session, box)
            await check_language(await session.connection(), settings.search_language)
    finally:
        await engine.dispose()
    if settings.redis_url:
        redis = Redis.from_url(settings.redis_url)
        try:
            await redis.ping()
        finally:
            await redis.aclose()
