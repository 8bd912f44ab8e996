"""`relaychat agents create` names single MCP tools as the API does, without starting servers."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.domain.accounts.users import create_user
from relaychat.storage.db import create_sessionmaker
from relaychat.storage.models import Agent
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.cli import relaychat_async
from tests.support.live import server_env, write_llm_config
from tests.support.mcp import child_processes


async def test_agents_create_takes_a_single_mcp_tool(
    clean_backend: Backend, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    config = write_llm_config(tmp_path / "relaychat.yaml", fake_llm)
    env = server_env(clean_backend, tmp_path, f"{REDIS_PREFIX_ROOT}cliagents:", config=config)
    async with create_sessionmaker(clean_backend.engine)() as session:
        await create_user(
            session, email="ops@example.com", name="Ops", password="a strong password", admin=True
        )
    base = ["agents", "create", "--owner", "ops@example.com", "--endpoint", "fake"]

    created = await relaychat_async(
        env, *base, "--name", "Clock", "--tool", "calculator", "--tool", "time__get_current_time"
    )
    refused = await relaychat_async(env, *base, "--name", "Ghost", "--tool", "ghost__lookup")

    assert created.exit_code == 0, created.stderr
    assert refused.exit_code == 1
    assert "unknown tools: ghost__lookup" in refused.stderr
    async with create_sessionmaker(clean_backend.engine)() as session:
        agents = (await session.scalars(select(Agent))).all()
    assert [(agent.name, agent.tools) for agent in agents] == [
        ("Clock", ["calculator", "time__get_current_time"])
    ]
    # Checked against the configuration alone: no MCP server was started to check it.
    assert child_processes("mcp_server_time") == []
