"""`relaychat serve`: migrate the database, check the stores, then serve HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.config
import signal
from types import FrameType
from typing import Annotated

import typer
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from relaychat import __version__, logs
from relaychat.cli._common import fail, load_settings, one_line, sqlite_file
from relaychat.crypto import SecretBox
from relaychat.domain.outbound.webhooks import check_encryption_key
from relaychat.domain.search.language import check_language
from relaychat.llm.config import load_config
from relaychat.llm.mcp.config import load_mcp_config
from relaychat.metrics import shared_between_workers
from relaychat.settings import PlaceholderSecretError, Settings
from relaychat.storage import backup as backups
from relaychat.storage import migrate
from relaychat.storage.db import create_engine, create_sessionmaker

logger = logging.getLogger("relaychat.serve")


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
    with contextlib.ExitStack() as stack:
        database = sqlite_file(settings.effective_database_url)
        if database is not None:
            # Held until the server ends: `relaychat db restore` refuses meanwhile.
            try:
                stack.enter_context(backups.serving(database))
            except backups.BackupError as exc:
                fail(f"cannot start: {exc}", code=1)
        try:
            migrate.upgrade(settings.effective_database_url)
            asyncio.run(_check_stores(settings, box))
        except Exception as exc:  # any failure to reach or read the stores: one line, exit 1
            fail(f"cannot start: {one_line(exc)}", code=1)
        log_config = logs.config(settings.log_level, settings.log_format or logs.default_format())
        # Once the server is sure to start (a refusal above leaves a caller's logging alone);
        # uvicorn applies it again in each worker.
        logging.config.dictConfig(log_config)
        _log_start(settings, host or settings.host, port or settings.port, workers)
        # uvicorn stops gracefully on SIGTERM, then puts back the handler it found and raises
        # the signal again: with Python's default the process would die of it (exit -15).
        # A stop that was asked for and carried out is a success.
        signal.signal(signal.SIGTERM, _stopped)
        if workers > 1:
            # Every worker's metrics in each scrape (relaychat/metrics.py).
            stack.enter_context(shared_between_workers())
        uvicorn.run(
            "relaychat.app:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            log_config=log_config,
            log_level=settings.log_level,
            # relaychat.access writes one line per request, with the route's template.
            access_log=False,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            # How long requests in flight may take to finish after SIGTERM; open event streams
            # are ended at once (exit_signals.py), so only real requests wait.
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )


def _stopped(signum: int, frame: FrameType | None) -> None:
    logger.info("relaychat stopped")
    raise SystemExit(0)


def _log_start(settings: Settings, host: str, port: int, workers: int) -> None:
    """The line an operator looks for first: what this server is about to run with."""
    url = make_url(settings.effective_database_url)
    database = (
        f"SQLite {url.database}"
        if url.get_backend_name() == "sqlite"
        else f"PostgreSQL {url.host}/{url.database}"
    )
    config = load_config(settings.config_path)
    servers = load_mcp_config(settings.config_path)
    logger.info(
        "relaychat %s starting on http://%s:%d with %d worker(s): database %s, %s, "
        "endpoints [%s], MCP servers [%s]",
        __version__,
        host,
        port,
        workers,
        database,
        "Redis" if settings.redis_url else "no Redis (events in this process)",
        ", ".join(spec.name for spec in config.endpoint_specs()),
        ", ".join(servers),
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
