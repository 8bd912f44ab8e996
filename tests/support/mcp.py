"""MCP helpers: real servers only (mcp-server-time over stdio, an SDK server over HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from relaychat.llm.mcp import McpManager, StdioServerConfig
from relaychat.llm.tools.base import ToolContext

ROOT = Path(__file__).resolve().parents[2]


# Hang guard for a test server to come up; never a timing assertion.
STARTUP_GUARD_SECONDS = 60.0


CONTEXT = ToolContext(user_id="u1", conversation_id="c1", generation_id="g1")


def time_server(**overrides: object) -> StdioServerConfig:
    """mcp-server-time, run with this interpreter and pinned to UTC."""
    values: dict[str, object] = {
        "command": sys.executable,
        "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
        "timeout_seconds": 30,
    }
    values.update(overrides)
    return StdioServerConfig.model_validate(values)


def child_processes(marker: str) -> list[int]:
    """Live (not zombie) children of this process whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, …
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == os.getpid() and state != "Z" and marker in cmdline:
            found.append(int(entry.name))
    return found


async def wait_for_child(marker: str) -> list[int]:
    """Wait until a child process matching `marker` runs; bounded, as a hang guard."""
    async with asyncio.timeout(STARTUP_GUARD_SECONDS):
        # Polled: the OS offers no event for "a child process started".
        while not (pids := child_processes(marker)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return pids


@contextlib.contextmanager
def http_server(port: int = 0, *, legacy: bool = False) -> Iterator[int]:
    """Run tests/llm/mcp/http_server.py in a subprocess and yield its port."""
    command = [sys.executable, "-m", "tests.llm.mcp.http_server", str(port)]
    if legacy:
        command.append("--legacy")
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(STARTUP_GUARD_SECONDS):
                raise RuntimeError("the test MCP server did not start")
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the test MCP server did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@contextlib.asynccontextmanager
async def managing(manager: McpManager) -> AsyncIterator[McpManager]:
    """The manager, always closed afterwards."""
    try:
        yield manager
    finally:
        await manager.aclose()
