"""`relaychat schedules`, run as an operator would (in-process), and a real server posting."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaychat.devtools.fake_llm import FakeLLM
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.cli import relaychat_async as cli
from tests.support.live import running_server, server_env, write_llm_config

pytestmark = pytest.mark.server

AGENT_ID = re.compile(r"\((agent_[0-9a-f]+)\)")
SCHEDULE_ID = re.compile(r"^created schedule (\S+) ", re.MULTILINE)


async def test_create_list_run_delete_and_a_server_posts_the_run(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    config = write_llm_config(tmp_path / "relaychat.yaml", fake_llm)
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}clisched:", config=config)
    made = await cli(
        env,
        "users",
        "create",
        "--email",
        "ops@example.com",
        "--name",
        "Ops",
        stdin="a long password\n",
    )
    assert made.exit_code == 0, made.stderr
    agent = await cli(
        env,
        "agents",
        "create",
        "--owner",
        "ops@example.com",
        "--name",
        "Briefer",
        "--endpoint",
        "fake",
    )
    assert agent.exit_code == 0, agent.stderr
    found = AGENT_ID.search(agent.stdout)
    assert found, agent.stdout
    common = ["--owner", "ops@example.com", "--name", "briefing", "--prompt", "Brief me"]

    refused = await cli(
        env, "schedules", "create", *common, "--agent", found.group(1), "--cron", "every morning"
    )
    assert refused.exit_code == 1 and "cron" in refused.stderr
    created = await cli(
        env,
        "schedules",
        "create",
        *common,
        "--agent",
        found.group(1),
        "--cron",
        "0 8 * * *",
        "--timezone",
        "Europe/Paris",
    )
    assert created.exit_code == 0, created.stderr
    schedule = SCHEDULE_ID.search(created.stdout)
    assert schedule, created.stdout
    schedule_id = schedule.group(1)
    nexts = [line for line in created.stdout.splitlines() if line.startswith("next: ")]
    assert len(nexts) == 5 and all("T08:00:00+0" in line for line in nexts)

    listed = await cli(env, "schedules", "list")
    assert schedule_id in listed.stdout and "enabled" in listed.stdout
    queued = await cli(env, "schedules", "run", schedule_id)
    assert queued.exit_code == 0, queued.stderr

    async with running_server(env) as base, httpx.AsyncClient(base_url=base) as http:
        login = await http.post(
            "/api/auth/login", json={"email": "ops@example.com", "password": "a long password"}
        )
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        run: dict[str, Any] = {}
        for _ in range(300):
            runs = (await http.get(f"/api/schedules/{schedule_id}/runs", headers=auth)).json()
            run = runs["runs"][0]
            if run["status"] == "posted" and run["reply_status"] == "complete":
                break
            await asyncio.sleep(0.05)
        assert (run["status"], run["trigger"], run["reply_status"]) == (
            "posted",
            "manual",
            "complete",
        ), run
        messages = (await http.get(f"/api/messages/{run['conversation_id']}", headers=auth)).json()
        texts = [(m["role"], m["text"]) for m in messages["messages"]]
        assert texts[0] == ("external", "Brief me")
        assert texts[1] == ("assistant", fake_llm.state.config.reply)

    deleted = await cli(env, "schedules", "delete", schedule_id)
    assert deleted.exit_code == 0, deleted.stderr
    assert schedule_id not in (await cli(env, "schedules", "list")).stdout
    missing = await cli(env, "schedules", "run", schedule_id)
    assert missing.exit_code == 1
