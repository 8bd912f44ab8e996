"""Start real relaychat server processes (and apps in this process) on ephemeral loopback ports.

The benchmarks start their servers with these too."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx
import uvicorn
from starlette.types import ASGIApp

if TYPE_CHECKING:
    # Only an annotation here: the benchmarks import this module and run no fake upstream.
    from relaychat.devtools.fake_llm import FakeLLM


HOST = "127.0.0.1"
# A deadline, never waited out by a healthy server: on a loaded machine (two cores shared with
# other test runs) a start has taken over 30 s, and a run failed for that alone.
STARTUP_SECONDS = 120.0


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerBackend(Protocol):
    """Where a server process keeps its data and sends its events."""

    @property
    def database_url(self) -> str | None:
        """None: SQLite in the data dir."""

    @property
    def redis_url(self) -> str | None:
        """None: the in-process memory bus."""


def server_env(
    backend: ServerBackend, data_dir: Path, redis_prefix: str, *, config: Path | None = None
) -> dict[str, str]:
    """Environment for a server process on `backend` (never the developer's data or settings)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "RELAYCHAT_", "JWT_"))
    }
    # Text: a traceback starts its own line, where bench/common.py and the tests look for it.
    env.setdefault("LOG_FORMAT", "text")
    env.update(
        RELAYCHAT_DATA_DIR=str(data_dir),
        REDIS_KEY_PREFIX=redis_prefix,
        COOKIE_SECURE="false",
    )
    if config is not None:
        env["RELAYCHAT_CONFIG"] = str(config)
    if backend.database_url:
        env["DATABASE_URL"] = backend.database_url
    if backend.redis_url:
        env["REDIS_URL"] = backend.redis_url
    return env


@dataclass
class ChildProcess:
    """A server process we started: its port and its log."""

    name: str
    process: asyncio.subprocess.Process
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@asynccontextmanager
async def running_child(
    name: str,
    command: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    log_path: Path,
    ready_path: str = "/healthz",
    ready_headers: Mapping[str, str] | None = None,
    startup_seconds: float = STARTUP_SECONDS,
) -> AsyncIterator[ChildProcess]:
    """Run `command`, a server that listens on `port`, until the block ends.

    Yields once GET `ready_path` answers 200; the output goes to `log_path`. Stopped with
    SIGTERM, then SIGKILL if it lingers.
    """
    log = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        *command, env=dict(env), stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    child = ChildProcess(name, process, port, log_path)
    try:
        # trust_env=False: a proxy setting must not send loopback probes elsewhere.
        async with httpx.AsyncClient(base_url=child.url, trust_env=False) as http:
            deadline = asyncio.get_running_loop().time() + startup_seconds
            while True:
                if process.returncode is not None:
                    raise RuntimeError(
                        f"{name} exited early with {process.returncode}; see {log_path}:\n"
                        f"{child.log_tail()}"
                    )
                try:
                    answer = await http.get(ready_path, headers=ready_headers)
                    if answer.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(
                        f"{name} did not come up; see {log_path}:\n{child.log_tail()}"
                    )
                await asyncio.sleep(0.1)
        yield child
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        log.close()


def serve_command(port: int, *args: str) -> list[str]:
    """`relaychat serve` on loopback `port`, run with this interpreter."""
    return [sys.executable, "-m", "relaychat", "serve", "--host", HOST, "--port", str(port), *args]


@asynccontextmanager
async def running_server(
    env: Mapping[str, str],
    *args: str,
    port: int | None = None,
    startup_seconds: float = STARTUP_SECONDS,
) -> AsyncIterator[str]:
    """Run `relaychat serve` (plus `args`) and yield its base URL once /healthz answers."""
    port = port or free_port()
    data_dir = Path(env["RELAYCHAT_DATA_DIR"])
    async with running_child(
        "relaychat",
        serve_command(port, *args),
        port=port,
        env=env,
        log_path=data_dir / f"server-{port}.log",
        startup_seconds=startup_seconds,
    ) as child:
        (data_dir / f"server-{port}.pid").write_text(str(child.pid))
        yield child.url


class _QuietServer(uvicorn.Server):
    """uvicorn inside the test process: leave pytest's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve `app` on an ephemeral loopback port in this event loop; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        lifespan="off",
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        await task


def write_llm_config(path: Path, fake: FakeLLM) -> Path:
    """A relaychat.yaml with endpoints served by the fake upstream, in both wire formats."""
    path.write_text(
        f"""
endpoints:
  anthropic:
    api_key: fake-key
    base_url: {fake.url}
    models: {{default: [fake-model]}}
  custom:
    - name: fake
      base_url: {fake.openai_base_url}
      api_key: fake-key
      models: {{default: [fake-model, fake-model-mini], fetch: false}}
      title_model: fake-model-mini
mcp_servers:
  time:
    command: {sys.executable}
    args: [-m, mcp_server_time, --local-timezone, UTC]
"""
    )
    return path
