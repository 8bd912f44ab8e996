"""Run `relaychat` in this process with typer's CliRunner, as an operator would run it.

A command calls `asyncio.run`, which cannot run in a thread whose event loop is running,
and which leaves that thread without a current loop afterwards: each invocation runs in a
worker thread of its own, so the tests' event loop (session-scoped) is never disturbed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

from redis.asyncio import Redis
from typer.testing import CliRunner, Result

from relaychat.cli import app
from relaychat.domain.accounts.users import create_user
from relaychat.realtime import EventBus, create_event_bus
from relaychat.settings import get_settings
from relaychat.storage.db import create_sessionmaker
from tests.support.backends import Backend

P = ParamSpec("P")
T = TypeVar("T")


def _invoke(env: Mapping[str, str], args: list[str], stdin: str) -> Result:
    # The process's environment is exactly `env`, as for a subprocess given `env=`.
    environ: dict[str, str | None] = {name: None for name in os.environ if name not in env}
    environ.update(env)
    # The settings are cached per process; each command reads its own environment.
    get_settings.cache_clear()
    try:
        # Not caught: a crash fails the test with its traceback instead of exit code 1.
        return CliRunner().invoke(app, args, input=stdin, env=environ, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


def relaychat(env: Mapping[str, str], *args: str, stdin: str = "") -> Result:
    """`relaychat ARGS` with `env` as its whole environment and `stdin` as its input."""
    return in_thread(_invoke, env, list(args), stdin)


async def relaychat_async(env: Mapping[str, str], *args: str, stdin: str = "") -> Result:
    """`relaychat` from a test that serves in its own event loop meanwhile."""
    return await asyncio.to_thread(_invoke, env, list(args), stdin)


def in_thread(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`func(...)` in a worker thread: for `asyncio.run` (and Alembic, which calls it) from a
    sync test, leaving the main thread's event loop alone."""
    with ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(func, *args, **kwargs).result()


async def make_users(backend: Backend, *accounts: tuple[str, bool]) -> None:
    """Users made directly, `(email, admin)` each: `users create` has its own test."""
    async with create_sessionmaker(backend.engine)() as session:
        for email, admin in accounts:
            await create_user(
                session, email=email, name="N", password="a strong password", admin=admin
            )


@asynccontextmanager
async def server_bus(backend: Backend, prefix: str) -> AsyncIterator[EventBus]:
    """A running server's bus, started: on the server's Redis channels when there is one,
    so it hears what a command tells the servers."""
    redis = Redis.from_url(backend.redis_url) if backend.redis_url else None
    bus = create_event_bus(redis, prefix)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()
        if redis is not None:
            await redis.aclose()
