"""Start real relaychat server processes on ephemeral loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

from relaychat.devtools.fake_llm import FakeLLM
from tests.support.backends import Backend


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(backend: Backend, data_dir: Path, redis_prefix: str) -> dict[str, str]:
    """Environment for a server process on the test backend (never the developer's data)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        RELAYCHAT_DATA_DIR=str(data_dir),
        DATABASE_URL=backend.database_url,
        REDIS_KEY_PREFIX=redis_prefix,
        COOKIE_SECURE="false",
    )
    env.pop("JWT_SECRET", None)
    if backend.redis_url:
        env["REDIS_URL"] = backend.redis_url
    return env


@asynccontextmanager
async def running_server(
    env: Mapping[str, str], *args: str, port: int | None = None, startup_seconds: float = 30.0
) -> AsyncIterator[str]:
    """Run `relaychat serve` (plus `args`) and yield its base URL once /healthz answers."""
    port = port or free_port()
    log = (Path(env["RELAYCHAT_DATA_DIR"]) / f"server-{port}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-m",
            "relaychat",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ],
        env=dict(env),
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    (Path(env["RELAYCHAT_DATA_DIR"]) / f"server-{port}.pid").write_text(str(process.pid))
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url) as http:
            deadline = asyncio.get_running_loop().time() + startup_seconds
            while True:
                if process.returncode is not None:
                    raise RuntimeError(
                        f"server exited early with {process.returncode}; see {log.name}"
                    )
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"server did not come up; see {log.name}")
                await asyncio.sleep(0.1)
        yield base_url
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


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
        host="127.0.0.1",
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
        yield f"http://127.0.0.1:{port}"
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


def relaychat(
    env: Mapping[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the `relaychat` command as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "relaychat", *args],
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def relaychat_async(
    env: Mapping[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """`relaychat` from a test that serves in its own event loop meanwhile."""
    return await asyncio.to_thread(relaychat, env, *args, stdin=stdin)
