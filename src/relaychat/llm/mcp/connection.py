"""One connection to one MCP server, owned by a background task.

The SDK's transports (`stdio_client`, `streamable_http_client`) and its `Client` open anyio
task groups and cancel scopes, which must be exited by the task that entered them. So each
connection gets one long-lived task that enters them, publishes the connected `Client`,
and waits to be told to stop; requests from any task go through that `Client`, whose
session multiplexes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp.client import Transport
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CONNECTION_CLOSED

from relaychat.llm.mcp.config import HttpServerConfig, McpServerConfig, StdioServerConfig
from relaychat.llm.mcp.environment import child_environment
from relaychat.llm.mcp.stderr import StderrTail

logger = logging.getLogger(__name__)

# Bounds the wait for a connection's task to wind down; the SDK's stdio shutdown itself
# allows a few seconds for the server to exit before it kills the process group.
STOP_TIMEOUT = 15.0


class StartFailed(Exception):
    """The server could not be started or did not complete the MCP handshake.

    `stderr` is the tail of what a stdio server wrote there, usually the real reason.
    """

    def __init__(self, reason: str, stderr: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stderr = stderr


class Connection:
    """A started server and its MCP session; `client` is usable while `alive`."""

    def __init__(self, name: str, config: McpServerConfig) -> None:
        self.name = name
        self.config = config
        self._client: Client | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._scope: anyio.CancelScope | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._broken = False
        self._stderr = (
            StderrTail(name, secrets=config.env.values())
            if isinstance(config, StdioServerConfig)
            else None
        )
        # The last HTTP error status an HTTP server answered: the SDK reports most of them
        # as "Server returned an error response", which hides a 401 from a 502.
        self._http_error: str | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError(f"MCP server {self.name} is not connected")
        return self._client

    @property
    def stderr(self) -> str:
        """The last lines the server wrote to stderr (stdio servers only)."""
        return self._stderr.text() if self._stderr is not None else ""

    @property
    def alive(self) -> bool:
        """Connected, not known to be broken, and its owning task still running."""
        return (
            self._client is not None
            and not self._broken
            and self._task is not None
            and not self._task.done()
        )

    def mark_broken(self) -> None:
        """Record that a request found the connection gone (the process died, …)."""
        self._broken = True

    async def start(self) -> None:
        """Start the server and complete the handshake, or raise StartFailed."""
        self._task = asyncio.create_task(self._own(), name=f"mcp-server:{self.name}")
        try:
            await self._ready.wait()
        except asyncio.CancelledError:
            # The caller gave up (an aborted generation): don't leave a half-started server.
            await self.stop()
            raise
        if self._client is None:
            await self.stop()
            error = self._error
            raise StartFailed(self._start_failure(error), self.stderr) from error

    def _start_failure(self, error: BaseException | None) -> str:
        """Why the start failed, in the words most likely to help whoever runs the server."""
        reason = _describe(error)
        if self._http_error is not None and not isinstance(error, StartFailed):
            return f"the server answered {self._http_error} ({reason})"
        if _connection_closed(error) and isinstance(self.config, StdioServerConfig):
            silent = "" if self.stderr else ", writing nothing to stderr"
            return f"the process closed its stdout during start-up (usually: it exited){silent}"
        return reason

    def _note_response(self, status: int, phrase: str) -> None:
        if status >= 400:
            self._http_error = f"HTTP {status} {phrase}".rstrip()

    async def stop(self) -> None:
        """Leave the session and stop the server; safe to call more than once."""
        task = self._task
        if task is None:
            return
        self._stop.set()
        if not self._ready.is_set() and self._scope is not None:
            # Still starting: nothing to leave gracefully, so cut the handshake short.
            self._scope.cancel()
        if not task.done():
            # Shielded so that a cancelled caller still waits for the process to be reaped.
            done, _ = await asyncio.shield(asyncio.wait({task}, timeout=STOP_TIMEOUT))
            if not done:
                logger.warning("MCP server %s did not stop in %g s", self.name, STOP_TIMEOUT)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _own(self) -> None:
        """The task that enters and exits the SDK's contexts."""
        timeout = self.config.timeout_seconds
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                scope.deadline = anyio.current_time() + timeout
                async with Client(
                    self._transport(), read_timeout_seconds=timeout, cache=None
                ) as client:
                    # Started: from here on only stop() ends the connection.
                    scope.deadline = math.inf
                    self._client = client
                    self._ready.set()
                    await self._stop.wait()
            if scope.cancelled_caught and not self._ready.is_set():
                self._error = StartFailed(
                    "stopped while starting"
                    if self._stop.is_set()
                    else f"did not start within {timeout:g} s"
                )
        except Exception as exc:
            if self._ready.is_set():
                logger.warning("MCP server %s: connection ended: %s", self.name, _describe(exc))
            self._error = exc
        finally:
            self._client = None
            if self._stderr is not None:
                # Everything the server wrote before it ended is read before anyone asks why.
                await self._stderr.close()
            self._ready.set()

    def _transport(self) -> Transport:
        config = self.config
        if isinstance(config, HttpServerConfig):
            # The transport leaves a client it was given open, so it is closed with it.
            return _http_transport(config, self._note_response)
        assert self._stderr is not None
        return _stdio_transport(config, self._stderr)


@contextlib.asynccontextmanager
async def _stdio_transport(config: StdioServerConfig, stderr: StderrTail) -> Any:
    """stdio_client with the server's environment, its stderr captured, and a failure to
    spawn the process reported with the command and the PATH it was looked up on."""
    env = child_environment(os.environ, config.inherit_env, config.env)
    params = StdioServerParameters(
        command=config.command, args=config.args, env=env, cwd=config.cwd
    )
    errlog = await stderr.open()
    spawned = False
    try:
        async with stdio_client(params, errlog=errlog) as streams:
            spawned = True
            # The child has its own copy; ours would keep the pipe open after the child ends.
            errlog.close()
            yield streams
    except OSError as exc:
        if spawned:
            raise
        raise StartFailed(_spawn_failure(config, exc)) from exc
    finally:
        errlog.close()


def _spawn_failure(config: StdioServerConfig, exc: OSError) -> str:
    """Why the process could not be created, naming what was missing."""
    command = config.command
    if config.cwd is not None and not os.path.isdir(config.cwd):
        return f"working directory {config.cwd!r} does not exist"
    if isinstance(exc, FileNotFoundError):
        if os.sep not in command:
            where = "the PATH in its `env`" if "PATH" in config.env else "relaychat's PATH"
            return (
                f"command {command!r} not found on {where}; install it there, or give its full path"
            )
        if os.path.exists(os.path.join(config.cwd or "", command)):
            return f"command {command!r} exists but the interpreter on its #! line does not"
        return f"command {command!r} does not exist"
    return f"command {command!r} cannot be run: {exc.strerror or exc}"


@contextlib.asynccontextmanager
async def _http_transport(config: HttpServerConfig, on_response: Callable[[int, str], None]) -> Any:
    """streamable_http_client with the configured headers; the HTTP client lives as long.
    Each answer's status goes to `on_response`."""
    timeout = httpx2.Timeout(config.timeout_seconds, read=max(config.timeout_seconds, 300.0))

    async def note(response: httpx2.Response) -> None:
        on_response(response.status_code, response.reason_phrase)

    async with (
        httpx2.AsyncClient(
            headers=config.headers, timeout=timeout, event_hooks={"response": [note]}
        ) as http,
        streamable_http_client(config.url, http_client=http) as streams,
    ):
        yield streams


def _connection_closed(error: BaseException | None) -> bool:
    """The SDK's "Connection closed": the server's end of the pipe or stream went away."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return isinstance(error, MCPError) and error.code == CONNECTION_CLOSED


def _describe(error: BaseException | None) -> str:
    """A short reason from an error the SDK may have wrapped in exception groups."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if error is None:
        return "unknown error"
    text = str(error) or type(error).__name__
    return text if isinstance(error, StartFailed) else f"{type(error).__name__}: {text}"
