"""McpManager: the configured MCP servers, started on first use and shared by all generations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import anyio
from mcp import Client, MCPError, types
from mcp.types import CONNECTION_CLOSED, INVALID_REQUEST, REQUEST_TIMEOUT
from pydantic import ValidationError

from relaychat.errors import ErrorCode, NotFound, ServiceUnavailable
from relaychat.llm.mcp.config import HttpServerConfig, McpServerConfig
from relaychat.llm.mcp.connection import Connection, StartFailed
from relaychat.llm.mcp.tools import McpTool, result_text
from relaychat.llm.tools.base import Tool, ToolError
from relaychat.statuses import McpServerState
from relaychat.storage.types import utcnow

logger = logging.getLogger(__name__)

T = TypeVar("T")
# A server that failed to start is not tried again before this many seconds.
DEFAULT_RETRY_AFTER = 30.0
# The most pages of tools/list followed, so a paginator that never ends cannot hang us.
MAX_TOOL_PAGES = 50
# Failures that mean the connection itself is gone rather than that one request failed.
_TRANSPORT_ERRORS = (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError, EOFError)


class McpServerUnavailable(ServiceUnavailable):
    """`reason` is the one line a person reads first; for a failed start, the server's last
    words on stderr when it wrote any, else what we saw (`command 'uvx' not found …`,
    `ConnectError: …`)."""

    code = ErrorCode.MCP_SERVER_UNAVAILABLE
    title = "MCP server unavailable"

    def __init__(
        self, detail: str, *, server: str, stderr: str = "", reason: str | None = None
    ) -> None:
        self.reason = reason or detail
        # The server's own account of the failure, where the operator and the user see it.
        if stderr:
            detail = f"{detail}; its stderr ended with:\n{stderr}"
        super().__init__(detail, server=server)
        if stderr:
            self.fields["stderr"] = stderr
        self.server = server
        self.stderr = stderr


# Lines of a stack trace, and Node's version banner after one: never the reason itself.
_TRACE_LINE = re.compile(r"^\s*(at\s|File \"|Traceback \(|\^+\s*$|Node\.js v)")


def last_words(stderr: str) -> str:
    """The line of a server's stderr that says why it did not start: the last one that is
    not part of a stack trace (Python's exception line, Node's `Error: …`, uv's
    `Caused by: …`); empty when it wrote nothing."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    meaningful = [line for line in lines if not _TRACE_LINE.match(line)]
    return (meaningful or lines or [""])[-1]


class McpServerNotFound(NotFound):
    code = ErrorCode.MCP_SERVER_NOT_FOUND
    title = "No such MCP server"


@dataclass(frozen=True)
class ServerStatus:
    """One server's state for people choosing tools: its tools while it runs, or why not."""

    name: str
    state: McpServerState
    transport: Literal["stdio", "http"] | None
    tools: list[Tool] = field(default_factory=list)
    # The whole account (`MCP server x failed to start: …; its stderr ended with: …`).
    error: str | None = None
    # The line to show first (see McpServerUnavailable).
    reason: str | None = None
    stderr: str = ""
    # When a failed server will be tried again (by the next use after that).
    next_attempt_at: datetime | None = None


@dataclass
class _Server:
    """What the manager knows of one configured server."""

    name: str
    config: McpServerConfig
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connection: Connection | None = None
    starts: int = 0
    failed_at: float | None = None
    # The same moment on the wall clock, for people: when the next attempt may happen.
    failed_at_wall: datetime | None = None
    failure: str = ""
    failure_stderr: str = ""
    # What the latest listing of its tools gave, whoever asked for it.
    outcome: list[Tool] | McpServerUnavailable | None = None
    # The listing `survey` started, shared by every survey while it runs.
    refresh: asyncio.Task[None] | None = None


class McpManager:
    """Starts each server once per process, restarts it after a crash, stops all on aclose.

    `disabled` names the servers configured but left out of this process, and why (a
    variable they need is not set): agents may still name them, and they say so when used.
    """

    def __init__(
        self,
        servers: Mapping[str, McpServerConfig],
        *,
        disabled: Mapping[str, str] | None = None,
        retry_after: float = DEFAULT_RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._servers = {name: _Server(name, config) for name, config in servers.items()}
        self._disabled = dict(disabled or {})
        self._retry_after = retry_after
        self._clock = clock
        self._closed = False

    def names(self) -> list[str]:
        """The configured server names, in file order."""
        return list(self._servers)

    @property
    def disabled(self) -> Mapping[str, str]:
        """Servers left out of this process, and why."""
        return self._disabled

    def known_tools(self, server: str) -> list[str] | None:
        """The names of the server's tools as last listed in this process; None when it was
        never listed (not started yet, or failing). Starts nothing."""
        state = self._servers.get(server)
        outcome = state.outcome if state is not None else None
        return [tool.name for tool in outcome] if isinstance(outcome, list) else None

    def starts(self, server: str) -> int:
        """How many times the server was started (attempts included) in this process."""
        return self._server(server).starts

    async def tools(self, server: str) -> list[Tool]:
        """The server's tools as relaychat tools, starting the server if needed."""
        if server in self._disabled:
            reason = self._disabled[server]
            raise McpServerUnavailable(
                f"MCP server {server} is disabled: {reason}", server=server, reason=reason
            )
        state = self._server(server)
        try:
            listed = await self._request(state, _list_tools)
        except McpServerUnavailable as exc:
            state.outcome = exc
            raise
        except ToolError as exc:
            state.outcome = McpServerUnavailable(
                f"MCP server {server} could not list its tools: {exc}",
                server=server,
                stderr=state.connection.stderr if state.connection is not None else "",
                reason=str(exc),
            )
            raise state.outcome from exc
        tools: dict[str, Tool] = {}
        for remote in listed:
            tool = McpTool(server, remote, self.call, state.config.timeout_seconds)
            if tool.name in tools:
                logger.warning("MCP server %s: skipping %r, its name clashes", server, remote.name)
                continue
            tools[tool.name] = tool
        state.outcome = list(tools.values())
        return state.outcome

    async def survey(self, wait: float | None = None) -> list[ServerStatus]:
        """Every server's state, disabled ones last: each is listed (started if needed) in
        the background, and what is known after `wait` seconds (None: once every listing
        has ended, bounded by the servers' own timeouts) is reported; a server still
        starting then is `starting`, and its start goes on for the next look."""
        pending = [self._refresh(state) for state in self._servers.values()]
        if pending and (wait is None or wait > 0):
            await asyncio.wait(pending, timeout=wait)
        statuses = [self._status(state) for state in self._servers.values()]
        statuses += [
            ServerStatus(
                name,
                McpServerState.DISABLED,
                None,
                error=f"MCP server {name} is disabled: {reason}",
                reason=reason,
            )
            for name, reason in self._disabled.items()
        ]
        return statuses

    def _refresh(self, state: _Server) -> asyncio.Task[None]:
        """The server's listing in the background, begun now unless one runs already."""
        if state.refresh is None or state.refresh.done():

            async def refresh() -> None:
                # The outcome is what tools() recorded; the survey reads it from there.
                with contextlib.suppress(McpServerUnavailable):
                    await self.tools(state.name)

            state.refresh = asyncio.create_task(refresh(), name=f"mcp-survey:{state.name}")
        return state.refresh

    def _status(self, state: _Server) -> ServerStatus:
        transport: Literal["stdio", "http"] = (
            "http" if isinstance(state.config, HttpServerConfig) else "stdio"
        )
        outcome = state.outcome
        connection = state.connection
        listing = state.refresh is not None and not state.refresh.done()
        if outcome is None or (listing and not (connection is not None and connection.alive)):
            return ServerStatus(state.name, McpServerState.STARTING, transport)
        if isinstance(outcome, list):
            return ServerStatus(state.name, McpServerState.RUNNING, transport, tools=outcome)
        retry_at = None
        if state.failed_at_wall is not None:
            retry_at = state.failed_at_wall + timedelta(seconds=self._retry_after)
        return ServerStatus(
            state.name,
            McpServerState.FAILED,
            transport,
            error=outcome.detail,
            reason=outcome.reason,
            stderr=outcome.stderr,
            next_attempt_at=retry_at,
        )

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> str:
        """Call one tool and return its text; failures the model should see raise ToolError."""
        state = self._server(server)

        async def call_tool(client: Client) -> str:
            timeout = state.config.timeout_seconds
            return result_text(
                await client.call_tool(tool, arguments, read_timeout_seconds=timeout)
            )

        try:
            return await self._request(state, call_tool)
        except McpServerUnavailable as exc:
            raise ToolError(exc.detail) from exc

    async def aclose(self) -> None:
        """Stop every server; later uses fail."""
        self._closed = True
        refreshing = [s.refresh for s in self._servers.values() if s.refresh is not None]
        for task in refreshing:
            task.cancel()
        await asyncio.gather(*refreshing, return_exceptions=True)
        await asyncio.gather(*(self._stop(state) for state in self._servers.values()))

    async def _stop(self, state: _Server) -> None:
        async with state.lock:
            if state.connection is not None:
                await state.connection.stop()
                state.connection = None

    def _server(self, name: str) -> _Server:
        state = self._servers.get(name)
        if state is None:
            raise McpServerNotFound(f"no MCP server named {name!r} is configured", server=name)
        return state

    async def _request(self, state: _Server, request: Callable[[Client], Awaitable[T]]) -> T:
        """Run a request on the shared session, restarting a broken server and retrying once."""
        connection = await self._connection(state)
        try:
            return await self._send(state, connection, request)
        except _Broken:
            logger.warning("MCP server %s: connection lost, restarting", state.name)
        connection = await self._connection(state, broken=connection)
        try:
            return await self._send(state, connection, request)
        except _Broken as exc:
            raise McpServerUnavailable(
                f"MCP server {state.name} lost its connection again after a restart",
                server=state.name,
                stderr=connection.stderr,
                reason="it lost its connection again after a restart",
            ) from exc.__cause__

    async def _send(
        self, state: _Server, connection: Connection, request: Callable[[Client], Awaitable[T]]
    ) -> T:
        """One request; a gone connection raises _Broken, a timeout ToolError."""
        try:
            return await request(connection.client)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED or _session_expired(exc):
                connection.mark_broken()
                raise _Broken from exc
            if exc.code == REQUEST_TIMEOUT:
                timeout = state.config.timeout_seconds
                raise ToolError(f"MCP server {state.name} timed out after {timeout:g} s") from exc
            raise ToolError(f"MCP server {state.name}: {exc.message}") from exc
        except ValidationError as exc:
            raise ToolError(f"MCP server {state.name} sent a malformed result") from exc
        except _TRANSPORT_ERRORS as exc:
            connection.mark_broken()
            raise _Broken from exc
        except RuntimeError as exc:
            # The connection's task ended between our check and the request.
            if connection.alive:
                raise
            raise _Broken from exc

    async def _connection(self, state: _Server, broken: Connection | None = None) -> Connection:
        """The live connection, started (once, under the lock) when there is none."""
        async with state.lock:
            if self._closed:
                raise McpServerUnavailable("MCP servers are shut down", server=state.name)
            current = state.connection
            if current is not None and current.alive and current is not broken:
                return current
            if current is not None:
                state.connection = None
                await current.stop()
            now = self._clock()
            if state.failed_at is not None and now - state.failed_at < self._retry_after:
                wait = self._retry_after - (now - state.failed_at)
                raise McpServerUnavailable(
                    f"MCP server {state.name} failed to start ({state.failure}); "
                    f"next attempt in {wait:.0f} s",
                    server=state.name,
                    stderr=state.failure_stderr,
                    reason=last_words(state.failure_stderr) or state.failure,
                )
            state.starts += 1
            connection = Connection(state.name, state.config)
            try:
                await connection.start()
            except StartFailed as exc:
                state.failed_at, state.failure = self._clock(), exc.reason
                state.failed_at_wall = utcnow()
                state.failure_stderr = exc.stderr
                logger.warning("MCP server %s failed to start: %s", state.name, exc.reason)
                raise McpServerUnavailable(
                    f"MCP server {state.name} failed to start: {exc.reason}",
                    server=state.name,
                    stderr=exc.stderr,
                    reason=last_words(exc.stderr) or exc.reason,
                ) from exc
            state.failed_at, state.failure, state.failure_stderr = None, "", ""
            state.failed_at_wall = None
            state.connection = connection
            return connection


def _session_expired(exc: MCPError) -> bool:
    """An HTTP server that no longer knows our session (it restarted): start a new one.

    The SDK reports the spec's 404 as INVALID_REQUEST, with the server's message
    ("Session not found") or its own ("Session terminated"), so the message is all we have.
    """
    message = exc.message.lower()
    return exc.code == INVALID_REQUEST and any(
        phrase in message for phrase in ("session not found", "session terminated")
    )


class _Broken(Exception):
    """The connection is gone; the cause says how."""


async def _list_tools(client: Client) -> list[types.Tool]:
    """Every page of tools/list."""
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools
