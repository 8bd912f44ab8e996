"""Two hosts on one database: recovery takes over only lapsed leases, and an owner whose
lease was taken over anyway still keeps its reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from relaychat.app import create_app
from relaychat.devtools.fake_llm import FakeLLM
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.models import Generation, Message
from relaychat.storage.types import utcnow
from tests.support.backends import Backend
from tests.support.factories import TestUser, make_conversation, make_user
from tests.support.gated_llm import GatedProvider, gated_registry
from tests.support.log_capture import lines, watch
from tests.support.settings import llm_settings

BEFORE = "the first half of the reply"
AFTER = " and the second half"


@pytest.fixture(params=["without_redis", "with_redis"])
def shared_redis(request: pytest.FixtureRequest, backend: Backend) -> bool:
    """Whether the hosts share Redis; two hosts sharing only the database is the case
    that matters most (neither hears of the other's generations)."""
    if request.param == "with_redis" and backend.redis_url is None:
        pytest.skip("SQLite runs with the in-memory bus only")
    return bool(request.param == "with_redis")


def host_settings(
    backend: Backend, data_dir: Path, fake_llm: FakeLLM, **overrides: Any
) -> Settings:
    data_dir.mkdir()
    return llm_settings(backend, data_dir, fake_llm, **overrides)


@asynccontextmanager
async def host(
    backend: Backend, data_dir: Path, fake_llm: FakeLLM, gate: GatedProvider, **overrides: Any
) -> AsyncIterator[Services]:
    """One server process's services on the shared database, its replies held by `gate`."""
    settings = host_settings(backend, data_dir, fake_llm, **overrides)
    services = Services.build(
        settings, engine=backend.engine, providers=gated_registry(settings.config_path, gate)
    )
    await services.start()
    try:
        yield services
    finally:
        await services.close()


async def generation_state(services: Services, generation_id: str) -> tuple[str, str, str]:
    """The generation's status, its reply's status and the reply's stored text."""
    async with services.sessionmaker() as session:
        generation = await session.get(Generation, generation_id)
        assert generation is not None
        reply = await session.get(Message, generation.response_message_id)
        assert reply is not None
        return generation.status, reply.status, reply.text


async def start_reply(services: Services) -> tuple[TestUser, str, str]:
    """A user's message on `services`' host whose reply is now streaming; the ids."""
    transport = httpx.ASGITransport(app=create_app(services=services))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        user = await make_user(client)
        convo = await make_conversation(client, user, endpoint="fake", title="kept")
        posted = await client.post(
            f"/api/messages/{convo['conversation_id']}", json={"text": "hi"}, headers=user.headers
        )
        assert posted.status_code == 202, posted.text
    return user, convo["conversation_id"], posted.json()["generation_id"]


async def wait_settled(services: Services, generation_id: str) -> tuple[str, str, str]:
    """Wait (bounded) until the owning host has finished the generation."""
    for _ in range(500):
        if generation_id not in services.runner.running():
            return await generation_state(services, generation_id)
        await asyncio.sleep(0.02)
    raise AssertionError(f"generation {generation_id} never finished")


async def test_a_second_host_leaves_a_live_generation_alone(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM, shared_redis: bool
) -> None:
    redis = {} if shared_redis else {"redis_url": None}
    gate_a, gate_b = GatedProvider(BEFORE, AFTER), GatedProvider()
    async with host(clean_backend, tmp_path / "a", fake_llm, gate_a, **redis) as a:
        _, _, generation_id = await start_reply(a)
        await gate_a.started.wait()
        async with host(clean_backend, tmp_path / "b", fake_llm, gate_b, **redis) as b:
            # B's start-up recovery, and its periodic sweep, find A's lease alive.
            assert (await generation_state(b, generation_id))[0] == "running"
            assert await b.runner.sweep_orphans() == 0
            assert (await generation_state(b, generation_id))[0] == "running"
            gate_a.release.set()
            assert await wait_settled(a, generation_id) == ("completed", "complete", BEFORE + AFTER)


async def test_a_stalled_owner_keeps_its_reply_after_a_takeover(
    clean_backend: Backend,
    tmp_path: Path,
    fake_llm: FakeLLM,
    shared_redis: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = {} if shared_redis else {"redis_url": None}
    gate_a, gate_b = GatedProvider(BEFORE, AFTER), GatedProvider()
    # A renews no lease during the test: its silence is what the other host sees.
    quiet = {"generation_heartbeat_seconds": 3600.0}
    async with host(clean_backend, tmp_path / "a", fake_llm, gate_a, **redis, **quiet) as a:
        _, _, generation_id = await start_reply(a)
        await gate_a.started.wait()
        async with host(clean_backend, tmp_path / "b", fake_llm, gate_b, **redis) as b:
            # A stalls past its lease (a long pause, a lost database connection).
            async with b.sessionmaker() as session:
                await session.execute(
                    update(Generation)
                    .where(Generation.id == generation_id)
                    .values(heartbeat_at=utcnow() - timedelta(hours=1))
                )
                await session.commit()
                request_id = await session.scalar(
                    select(Generation.request_id).where(Generation.id == generation_id)
                )
            watch(caplog)
            assert await b.runner.sweep_orphans() == 1
            assert (await generation_state(b, generation_id))[:2] == ("interrupted", "unfinished")
            # B logs the takeover as the work of the request A served: the id is on the row.
            (line,) = lines(caplog, "relaychat.domain.answering.generations")
            assert request_id is not None and len(request_id) == 32
            assert (line.request_id, line.generation_id) == (request_id, generation_id)  # type: ignore[attr-defined]
            # A was alive after all: its finished reply replaces the interrupted mark.
            gate_a.release.set()
            assert await wait_settled(a, generation_id) == ("completed", "complete", BEFORE + AFTER)


async def test_shutdown_never_cuts_a_reply_being_written(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply whose stream has ended is written as completed even when the host shuts
    down in the middle of writing it, and `close` returns only once it is written."""
    gate = GatedProvider(BEFORE, AFTER)
    writing, resume = asyncio.Event(), asyncio.Event()
    async with host(clean_backend, tmp_path / "a", fake_llm, gate) as a:
        finalize = a.runner._finalize

        async def held_finalize(*args: Any, **kwargs: Any) -> Any:
            writing.set()
            await resume.wait()  # the shutdown's cancel arrives here
            return await finalize(*args, **kwargs)

        monkeypatch.setattr(a.runner, "_finalize", held_finalize)
        _, _, generation_id = await start_reply(a)
        await gate.started.wait()
        gate.release.set()
        await writing.wait()
        closing = asyncio.create_task(a.runner.close())
        await asyncio.sleep(0.05)
        assert not closing.done(), "close returned while the reply was still being written"
        resume.set()
        await closing
        assert await generation_state(a, generation_id) == ("completed", "complete", BEFORE + AFTER)


async def test_shutdown_leaves_the_database_free(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """After `close`, every streaming reply is stored as unfinished and no task of the
    host still holds the database: the next writer gets it at once."""
    gate = GatedProvider(BEFORE, AFTER)
    async with host(clean_backend, tmp_path / "a", fake_llm, gate) as a:
        started = [await start_reply(a) for _ in range(6)]
        await gate.started.wait()
        await a.runner.close()
        states = [await generation_state(a, generation_id) for *_, generation_id in started]
    assert {state[:2] for state in states} == {("interrupted", "unfinished")}
    async with clean_backend.engine.connect() as connection:
        if clean_backend.engine.dialect.name == "sqlite":
            # No busy wait: a lock still held by the host would fail this at once. The
            # connection is discarded afterwards, so no other test gets it without a wait.
            await connection.exec_driver_sql("PRAGMA busy_timeout=0")
        try:
            await connection.execute(update(Generation).values(heartbeat_at=utcnow()))
            await connection.commit()
        finally:
            await connection.invalidate()
