"""`kill -9` mid-run: a schedule's run is retried once after its lease lapses, its prompt is
posted once, and the run ends in a recorded state (a reply, or a reply marked interrupted).

Each run is held still at a chosen point, so the kill lands there every time: on
PostgreSQL a row lock held by the test stops the post inside its transaction, or on the
write just after its commit; on both backends the fake upstream never answers, so the
reply is in flight. Leases are short, and every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from relaychat.devtools.fake_llm import FakeLLM
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.factories import TestUser, make_conversation, make_user
from tests.support.live import (
    ChildProcess,
    free_port,
    running_child,
    serve_command,
    server_env,
    write_llm_config,
)
from tests.support.schedules import make_schedule, runs_of

pytestmark = pytest.mark.server

# Short leases, so a dead process's run and reply are taken over in seconds.
FAST = {
    "SCHEDULER_POLL_SECONDS": "0.2",
    "SCHEDULE_LEASE_SECONDS": "2",
    "GENERATION_HEARTBEAT_SECONDS": "0.5",
    "GENERATION_LEASE_SECONDS": "2",
}
# A bound on every wait, never reached when things work: the machine is shared and slow.
DEADLINE = 60.0
# The fake upstream sends the headers of the reply, then nothing: the reply is in flight.
HANG = '!fake {"fail": "hang"}'

T = TypeVar("T")


async def until(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll `probe` until it gives something (not None, 0 or empty); fail after DEADLINE
    seconds, saying `what` was awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while True:
        found = await probe()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"still waiting for {what} after {DEADLINE:g} s")
        await asyncio.sleep(0.1)


async def start(
    stack: AsyncExitStack, env: dict[str, str], tmp_path: Path, count: int = 1
) -> list[ChildProcess]:
    """`count` server processes, started side by side (a start is mostly waiting)."""

    async def one() -> ChildProcess:
        port = free_port()
        return await stack.enter_async_context(
            running_child(
                "relaychat",
                serve_command(port),
                port=port,
                env=env,
                log_path=tmp_path / f"server-{port}.log",
            )
        )

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def kill(child: ChildProcess) -> None:
    """SIGKILL: no shutdown code runs, nothing is flushed or marked."""
    os.kill(child.pid, signal.SIGKILL)
    await child.process.wait()


def pid_of(worker_id: str) -> int:
    """The process of a worker id (`host:pid:tag`, relaychat.services.worker_identity)."""
    return int(worker_id.rsplit(":", 2)[1])


async def schedule_prompts(
    http: httpx.AsyncClient, user: TestUser, cid: str, schedule_id: str
) -> list[str]:
    """The run id of every prompt of the schedule stored in the conversation, one per message."""
    answer = await http.get(f"/api/messages/{cid}", headers=user.headers)
    assert answer.status_code == 200, answer.text
    return [
        m["metadata"]["schedule_run_id"]
        for m in answer.json()["messages"]
        if (m.get("metadata") or {}).get("source") == "schedule"
        and m["metadata"].get("schedule_id") == schedule_id
    ]


async def run_of(
    http: httpx.AsyncClient, user: TestUser, schedule_id: str, run_id: str
) -> dict[str, Any]:
    [run] = [r for r in await runs_of(http, user, schedule_id) if r["id"] == run_id]
    return run


async def blocked_by(conn: AsyncConnection) -> int:
    """How many sessions wait for a lock `conn` holds."""
    return int(
        (
            await conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                )
            )
        ).scalar_one()
    )


async def claimed_by(conn: AsyncConnection, run_id: str) -> str | None:
    return (
        await conn.execute(
            text("SELECT claimed_by FROM schedule_runs WHERE id = :id"), {"id": run_id}
        )
    ).scalar_one_or_none()


def soon(seconds: int) -> str:
    """An `at` time at least `seconds` from now, in whole seconds."""
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds + 1)
    return moment.isoformat()


async def test_a_server_killed_while_posting_a_run_leaves_it_to_the_other_which_posts_it_once(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    if clean_backend.redis_url is None:
        pytest.skip(
            "needs two server processes on one database (PostgreSQL + Redis), and a row "
            "lock to hold a post inside its transaction: SQLite has neither"
        )
    config = write_llm_config(tmp_path / "relaychat.yaml", fake_llm)
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}schedkill1:", config=config)
    env.update(FAST)
    async with AsyncExitStack() as stack:
        servers = await start(stack, env, tmp_path, 2)
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=servers[0].url))
        user = await make_user(http)
        cid = (await make_conversation(http, user, endpoint="fake", model="fake-model"))[
            "conversation_id"
        ]
        # The conversation's row, locked: a post gets as far as writing its message (its
        # claim committed, its fence taken) and waits there, inside its transaction.
        lock = await stack.enter_async_context(clean_backend.engine.connect())
        await lock.execute(
            text("SELECT id FROM conversations WHERE id = :id FOR UPDATE"), {"id": cid}
        )
        made = await make_schedule(
            http, user, conversation_id=cid, at=soon(1), prompt="What is on today?"
        )
        [run] = await until(lambda: runs_of(http, user, made["id"]), "the occurrence's run")
        await until(lambda: blocked_by(lock), "a post waiting on the locked conversation")
        holder = pid_of(await until(lambda: claimed_by(lock, run["id"]), "the run's claim"))
        [dying] = [s for s in servers if s.pid == holder]
        [survivor] = [s for s in servers if s.pid != holder]
        await kill(dying)
        # Let go: the dead process's transaction, cut off before its commit, rolls back.
        await lock.rollback()

        http.base_url = httpx.URL(survivor.url)

        async def replied() -> dict[str, Any] | None:
            found = await run_of(http, user, made["id"], run["id"])
            return found if found["reply_status"] == "complete" else None

        done = await until(replied, "the run posted again by the other server, and answered")
        prompts = await schedule_prompts(http, user, cid, made["id"])
        async with clean_backend.engine.connect() as conn:
            poster = await claimed_by(conn, run["id"])
    # Tried twice (the second time after the first's lease lapsed), posted once, by the
    # survivor; the reply is there.
    assert (done["status"], done["attempts"], done["error"]) == ("posted", 2, None), done
    assert done["message_id"] and done["reply_message_id"]
    assert poster is not None and pid_of(poster) == survivor.pid
    assert prompts == [run["id"]]


async def test_a_server_killed_as_a_run_is_answered_posts_nothing_twice_and_notes_the_reply(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """A run posted, its reply in flight, its process killed: the run keeps its one prompt
    and notes its reply, which is marked interrupted; nothing is posted again.

    SQLite: killed once the upstream has the reply's request, then started again on its
    data. PostgreSQL + Redis: killed just after the post committed (a lock on the
    schedule's row holds it there, on the write that follows); the other process carries
    on. Before the run noted its message and reply in the post's own transaction, that
    kill left it `posted` with neither, and how its reply ended could not be told.
    """
    shared = clean_backend.redis_url is not None
    config = write_llm_config(tmp_path / "relaychat.yaml", fake_llm)
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}schedkill2:", config=config)
    env.update(FAST)
    marker = f"kill-mid-reply-{uuid.uuid4().hex}"
    async with AsyncExitStack() as stack:
        servers = await start(stack, env, tmp_path, 2 if shared else 1)
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=servers[0].url))
        user = await make_user(http)
        cid = (await make_conversation(http, user, endpoint="fake", model="fake-model"))[
            "conversation_id"
        ]
        made = await make_schedule(
            http, user, conversation_id=cid, cron="0 8 * * *", prompt=f"{HANG}\n{marker}"
        )
        if shared:
            # Locked against writes, not against the key share a new run takes. (A run
            # asked for now, below: the planner would pass over a locked schedule.)
            lock = await stack.enter_async_context(clean_backend.engine.connect())
            await lock.execute(
                text("SELECT id FROM schedules WHERE id = :id FOR NO KEY UPDATE"),
                {"id": made["id"]},
            )
        asked = await http.post(f"/api/schedules/{made['id']}/run", headers=user.headers)
        assert asked.status_code == 202, asked.text
        run_id = asked.json()["id"]
        if shared:
            await until(lambda: blocked_by(lock), "the post's next write waiting on the lock")
            await until(lambda: schedule_prompts(http, user, cid, made["id"]), "the prompt")
            holder = pid_of(await until(lambda: claimed_by(lock, run_id), "the run's claim"))
            [dying] = [s for s in servers if s.pid == holder]
            [live] = [s for s in servers if s is not dying]
            await kill(dying)
            await lock.rollback()
        else:

            async def in_flight() -> dict[str, Any] | None:
                run = await run_of(http, user, made["id"], run_id)
                upstream = any(marker in json.dumps(r.body) for r in list(fake_llm.requests))
                return run if run["reply_status"] == "streaming" and upstream else None

            await until(in_flight, "the run posted and its reply asked of the upstream")
            await kill(servers[0])
            [live] = await start(stack, env, tmp_path)  # on the same data dir
        http.base_url = httpx.URL(live.url)

        async def settled() -> dict[str, Any] | None:
            found = await run_of(http, user, made["id"], run_id)
            return found if found["reply_status"] not in (None, "streaming") else None

        # The dead process's reply, found by its lapsed lease and marked by the live one.
        done = await until(settled, "the killed reply marked interrupted")
        generation = (
            await http.get(f"/api/generations/{done['generation_id']}", headers=user.headers)
        ).json()
        # The live scheduler runs (it posts a run asked for now), and posts nothing else.
        patched = await http.patch(
            f"/api/schedules/{made['id']}", json={"prompt": "And now?"}, headers=user.headers
        )
        assert patched.status_code == 200, patched.text
        again = await http.post(f"/api/schedules/{made['id']}/run", headers=user.headers)
        assert again.status_code == 202, again.text
        later = again.json()["id"]

        async def answered() -> dict[str, Any] | None:
            found = await run_of(http, user, made["id"], later)
            return found if found["reply_status"] == "complete" else None

        await until(answered, "the run asked for now, answered")
        prompts = await schedule_prompts(http, user, cid, made["id"])
        messages = (await http.get(f"/api/messages/{cid}", headers=user.headers)).json()
    # Posted once, in one attempt, with its message and reply noted; the reply is recorded
    # as cut short, not left streaming.
    assert (done["status"], done["attempts"], done["error"]) == ("posted", 1, None), done
    by_id = {m["message_id"]: m for m in messages["messages"]}
    assert by_id[done["message_id"]]["metadata"]["schedule_run_id"] == run_id
    assert by_id[done["reply_message_id"]]["status"] == "unfinished"
    assert done["reply_status"] == "unfinished", done
    assert generation["status"] == "interrupted", generation
    assert sorted(prompts) == sorted([run_id, later])
