"""Two server processes on one database run one schedule every second: each occurrence is
posted once, and none is left out."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.factories import make_conversation, make_user
from tests.support.live import running_server, server_env

pytestmark = pytest.mark.server

SECONDS = 20


async def test_two_servers_run_a_schedule_every_second_without_duplicate_or_gap(
    clean_backend: Backend, tmp_path: Path
) -> None:
    if clean_backend.redis_url is None:
        pytest.skip("several server processes need the shared backend (PostgreSQL + Redis)")
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}schedtwo:")
    env.update(SCHEDULE_MIN_INTERVAL_SECONDS="1", SCHEDULER_POLL_SECONDS="0.2")
    async with AsyncExitStack() as stack:
        bases = [await stack.enter_async_context(running_server(env)) for _ in range(2)]
        # Made through one, run by both: each process's scheduler claims what it can.
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=bases[0]))
        user = await make_user(http)
        # No endpoint: the prompt is stored and nothing answers, so a run is one message.
        cid = (await make_conversation(http, user))["conversation_id"]
        start = datetime.now(UTC)
        until = start + timedelta(seconds=SECONDS)
        made = await http.post(
            "/api/schedules",
            json={
                "name": "every second",
                "prompt": "tick",
                "conversation_id": cid,
                "rrule": "FREQ=SECONDLY",
                "until": until.isoformat(),
            },
            headers=user.headers,
        )
        assert made.status_code == 201, made.text
        schedule_id = made.json()["id"]
        runs: list[dict[str, Any]] = []
        for _ in range(int((SECONDS + 30) / 0.5)):
            await asyncio.sleep(0.5)
            listed = await http.get(
                f"/api/schedules/{schedule_id}/runs?limit=100", headers=user.headers
            )
            runs = listed.json()["runs"]
            settled = all(r["status"] in ("posted", "failed", "skipped") for r in runs)
            newest = datetime.fromisoformat(runs[0]["occurrence_at"]) if runs else start
            if settled and newest > until - timedelta(seconds=1):
                break
        messages = (await http.get(f"/api/messages/{cid}", headers=user.headers)).json()
    occurrences = sorted(r["occurrence_at"] for r in runs)
    assert [r["status"] for r in runs] == ["posted"] * len(runs), runs
    # Every second from the first run to `until`, each once.
    first = datetime.fromisoformat(occurrences[0])
    expected = []
    moment = first
    while moment <= until:
        expected.append(_iso(moment))
        moment += timedelta(seconds=1)
    assert occurrences == expected
    assert len(expected) >= SECONDS - 1
    posted = [m["metadata"]["schedule_run_id"] for m in messages["messages"]]
    assert sorted(posted) == sorted(r["id"] for r in runs)
    async with clean_backend.engine.connect() as conn:
        claimers = (await conn.execute(text("SELECT claimed_by FROM schedule_runs"))).scalars()
        print("runs per server process:", Counter(c.rsplit(":", 1)[0] for c in claimers))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
