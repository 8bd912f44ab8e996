"""Starting and stopping a real `relaychat serve`: the example config as is, one-line
start-up errors, and Ctrl-C with an event stream open."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from tests.support.cli import relaychat
from tests.support.live import free_port, running_server

pytestmark = pytest.mark.server

EXAMPLE = Path(__file__).resolve().parents[2] / "relaychat.example.yaml"
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "FAKE_LLM_API_KEY")


def embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A fresh machine's environment: embedded SQLite, no provider keys, no Redis."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "RELAYCHAT_")) and k not in PROVIDER_KEYS
    }
    env.pop("JWT_SECRET", None)
    env.update(RELAYCHAT_DATA_DIR=str(data_dir), COOKIE_SECURE="false", **extra)
    return env


def server_pid(data_dir: Path) -> int:
    return int(next(data_dir.glob("server-*.pid")).read_text())


def server_log(data_dir: Path) -> str:
    return "\n".join(p.read_text() for p in data_dir.glob("server-*.log"))


async def test_the_example_config_starts_as_is(tmp_path: Path) -> None:
    config = tmp_path / "relaychat.yaml"
    shutil.copy(EXAMPLE, config)
    env = embedded_env(tmp_path, RELAYCHAT_CONFIG=str(config))
    async with (
        running_server(env, startup_seconds=180) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        assert (await http.get("/readyz")).status_code == 200
        await http.post(
            "/api/auth/register",
            json={"email": "a@example.com", "password": "a long password", "name": "A"},
        )
        login = await http.post(
            "/api/auth/login", json={"email": "a@example.com", "password": "a long password"}
        )
        auth = {"authorization": f"Bearer {login.json()['access_token']}"}
        listed = (await http.get("/api/endpoints", headers=auth)).json()["endpoints"]
        assert [e["name"] for e in listed] == ["fake"]
    log = server_log(tmp_path)
    assert "Traceback" not in log
    for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        lines = [line for line in log.splitlines() if variable in line]
        assert len(lines) == 1, log
        assert "skipped" in lines[0]


async def test_an_mcp_server_whose_variable_is_missing_is_skipped_with_one_warning(
    tmp_path: Path,
) -> None:
    config = tmp_path / "relaychat.yaml"
    config.write_text(
        "mcp_servers:\n"
        "  github:\n"
        "    command: github-mcp\n"
        '    env: {GITHUB_TOKEN: "${GITHUB_TOKEN}"}\n'
    )
    env = embedded_env(tmp_path, RELAYCHAT_CONFIG=str(config))
    env.pop("GITHUB_TOKEN", None)
    async with (
        running_server(env, startup_seconds=180) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        assert (await http.get("/readyz")).status_code == 200
    log = server_log(tmp_path)
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "GITHUB_TOKEN" in line]
    assert len(lines) == 1, log
    assert "MCP server github skipped" in lines[0]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"PORT": "not-a-port"}, "PORT"),
        ({"JWT_SECRET": "changeme"}, "JWT_SECRET"),
        ({"METRICS_TOKEN": "too-short-to-guard-anything"}, "METRICS_TOKEN"),
        ({"RELAYCHAT_CONFIG": "{config}"}, "base_url"),
        ({"DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:{port}/none"}, "cannot start"),
    ],
)
def test_a_start_up_error_is_one_line_and_a_failing_exit(
    tmp_path: Path, setting: dict[str, str], expected: str
) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("endpoints:\n  custom:\n    - name: local\n      api_key: x\n")
    values = {k: v.format(config=config, port=free_port()) for k, v in setting.items()}
    # In-process (the checks come before the server starts); a crash would fail the test.
    done = relaychat(embedded_env(tmp_path, **values), "serve", "--port", str(free_port()))
    assert done.exit_code != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0]


async def test_ctrl_c_with_an_open_event_stream_stops_cleanly(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    async with (
        running_server(env, startup_seconds=180) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        await http.post(
            "/api/auth/register",
            json={"email": "a@example.com", "password": "a long password", "name": "A"},
        )
        login = await http.post(
            "/api/auth/login", json={"email": "a@example.com", "password": "a long password"}
        )
        auth = {"authorization": f"Bearer {login.json()['access_token']}"}
        async with http.stream("GET", "/api/events", headers=auth, timeout=60) as stream:
            chunks = stream.aiter_raw()
            assert (await anext(chunks)).startswith(b"retry:")
            pid = await asyncio.to_thread(server_pid, tmp_path)
            os.kill(pid, signal.SIGINT)
            # The stream ends (the client would reconnect) instead of being cut mid-wait.
            rest = [chunk async for chunk in chunks]
            assert all(chunk.startswith(b":") for chunk in rest)
        for _ in range(600):  # the server exits on its own
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.1)
    log = server_log(tmp_path)
    assert "Finished server process" in log, log
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert "timeout graceful shutdown exceeded" not in log, log
