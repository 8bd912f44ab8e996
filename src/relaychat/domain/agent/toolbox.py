"""Which tools an agent gets: built-in ones, relaychat's own, and those of its MCP servers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.agent.agent_tools import Recall, Remember, Sender, SendMessage
from relaychat.domain.agent.agents import AgentSpec
from relaychat.errors import AppError
from relaychat.llm.mcp import McpServerUnavailable, McpTool, ServerStatus
from relaychat.llm.mcp.tools import SEPARATOR, server_of
from relaychat.llm.tools.base import Tool, ToolSet
from relaychat.llm.tools.builtin import builtin_tools
from relaychat.statuses import McpServerState


class McpTools(Protocol):
    """What the toolbox needs of the MCP manager."""

    def names(self) -> list[str]:
        """Configured MCP server names."""
        ...

    @property
    def disabled(self) -> Mapping[str, str]:
        """Servers configured but left out of this process, and why."""
        ...

    def known_tools(self, server: str) -> list[str] | None:
        """The server's tool names as last listed, None if never listed (starts nothing)."""
        ...

    async def tools(self, server: str) -> list[Tool]:
        """The server's tools (starting it on first use)."""
        ...

    async def survey(self, wait: float | None = None) -> list[ServerStatus]:
        """Every server's state, after waiting up to `wait` s for those starting."""
        ...


@dataclass(frozen=True)
class AgentTools:
    """The tools of one agent turn, and the MCP servers (or single tools) left out of it."""

    tools: ToolSet
    # As stored in the reply's `metadata.mcp_unavailable`: [{"server", "error", "reason"}],
    # with "tools" when the agent named that server's tools one by one (those left out).
    unavailable: list[dict[str, Any]] = field(default_factory=list)


class LocalToolInfo(BaseModel):
    """A tool of this instance: built in (`calculator`, `current_time`) or relaychat's own."""

    name: str
    description: str
    parameters: dict[str, Any] = Field(description="The JSON schema of its arguments.")
    source: Literal["builtin", "relaychat"]


class McpToolInfo(BaseModel):
    """A tool of an MCP server; `name` (`server__tool`) is what an agent's `tools` lists."""

    name: str
    description: str
    parameters: dict[str, Any] = Field(description="The JSON schema of its arguments.")
    source: Literal["mcp"] = "mcp"
    server: str
    remote_name: str = Field(description="The tool's own name on its server.")


class McpServerDown(BaseModel):
    """An MCP server that cannot start: its tools are unknown, and agents go without them."""

    name: str = Field(description="The server's name.")
    source: Literal["mcp"] = "mcp"
    server: str
    error: str
    stderr: str = Field(description="What the server wrote: usually the real reason it is down.")


class McpServerInfo(BaseModel):
    """An MCP server, how it stands in the process that answered, and its tools."""

    name: str
    state: McpServerState
    transport: Literal["stdio", "http"] | None = Field(description="Null for a disabled one.")
    reason: str | None = Field(
        description="Why it is not running, in one line: for a failed start the server's own "
        "last words on stderr when it wrote any, else the error of the attempt."
    )
    error: str | None = Field(description="The whole account, with the tail of its stderr.")
    stderr: str = Field(description="The last lines it wrote to stderr (stdio servers).")
    next_attempt_at: datetime | None = Field(
        description="A failed server is not started again before then (by its next use)."
    )
    tools: list[McpToolInfo] = Field(description="Its tools while it runs; empty otherwise.")


# One entry of the flat catalogue; `source` and the presence of `error` tell them apart.
CatalogEntry = LocalToolInfo | McpToolInfo | McpServerDown
_BUILTIN = frozenset({"calculator", "current_time"})


@dataclass(frozen=True)
class Catalog:
    """Every tool an agent may name, and the MCP servers by state."""

    tools: list[CatalogEntry]
    servers: list[McpServerInfo]


@dataclass
class _LeftOut:
    """What one agent turn goes without: `entries` for the reply's metadata, `reasons` by
    tool name for a model that calls one of those tools anyway."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    def add(self, server: str, error: str, reason: str, tools: list[str] | None) -> None:
        entry: dict[str, Any] = {"server": server, "error": error, "reason": reason}
        if tools is not None:
            entry["tools"] = tools
            self.reasons.update(dict.fromkeys(tools, reason))
        self.entries.append(entry)


def local_tool_names() -> list[str]:
    """Tools every instance offers, without MCP servers (for validation outside the app)."""
    return [tool.name for tool in builtin_tools()] + ["remember", "recall", "send_message"]


class Toolbox:
    """Builds the ToolSet of each agent generation."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        send: Sender,
        mcp: McpTools | None = None,
    ) -> None:
        self.mcp = mcp
        self._local: dict[str, Tool] = {
            tool.name: tool
            for tool in (*builtin_tools(), Remember(sessionmaker), Recall(sessionmaker))
        }
        self._local["send_message"] = SendMessage(send)

    def register(self, tool: Tool) -> None:
        """Offer another tool to agents (extensions, tests)."""
        self._local[tool.name] = tool

    def tool_names(self) -> list[str]:
        """Names of this instance's own tools, which an agent may list in `tools`."""
        return list(self._local)

    def server_tools(self) -> dict[str, list[str] | None]:
        """Every MCP server an agent may name (disabled ones too: they may come back), with
        the names of its tools where this process has listed them, else None."""
        if self.mcp is None:
            return {}
        known: dict[str, list[str] | None] = {
            name: self.mcp.known_tools(name) for name in self.mcp.names()
        }
        return known | dict.fromkeys(self.mcp.disabled)

    async def for_agent(self, agent: AgentSpec) -> AgentTools:
        """The agent's tools: its own, every tool of each server in `mcp_servers`, and the
        MCP tools it names one by one in `tools` (`server__tool`).

        An MCP server that cannot be used (it fails to start, is disabled or no longer
        configured), or a tool its server no longer offers, is left out of this turn rather
        than failing it, and said in `unavailable`; the servers start concurrently, so the
        turn waits for the slowest one at most.
        """
        tools = [self._local[name] for name in agent.tools if name in self._local]
        if self.mcp is None:
            return AgentTools(ToolSet(tools))
        mcp = self.mcp
        left_out = _LeftOut()
        wanted = self._wanted(agent, left_out)
        listed = await asyncio.gather(
            *(mcp.tools(server) for server in wanted), return_exceptions=True
        )
        for (server, names), result in zip(wanted.items(), listed, strict=True):
            if isinstance(result, AppError):
                reason = result.reason if isinstance(result, McpServerUnavailable) else None
                left_out.add(server, result.detail, reason or result.detail, names)
            elif isinstance(result, BaseException):
                raise result
            elif names is None:
                tools.extend(result)
            else:
                offered = {tool.name: tool for tool in result}
                tools.extend(offered[name] for name in names if name in offered)
                gone = [name for name in names if name not in offered]
                if gone:
                    reason = f"MCP server {server} does not offer {', '.join(gone)} (any more)"
                    left_out.add(server, reason, reason, gone)
        return AgentTools(ToolSet(tools, left_out.reasons), left_out.entries)

    def _wanted(self, agent: AgentSpec, left_out: _LeftOut) -> dict[str, list[str] | None]:
        """Per MCP server: None for all its tools (`mcp_servers`), else those the agent names
        one by one; a tool of a server no longer configured goes to `left_out`."""
        servers = list(self.server_tools())
        wanted: dict[str, list[str] | None] = dict.fromkeys(agent.mcp_servers)
        for name in agent.tools:
            if name in self._local:
                continue
            server = server_of(name, servers)
            if server is None:
                if SEPARATOR in name:
                    prefix = name.split(SEPARATOR, 1)[0]
                    reason = "no MCP server of this name is configured"
                    left_out.add(prefix, f"MCP server {prefix}: {reason}", reason, [name])
                continue
            picked = wanted.setdefault(server, [])
            if picked is not None and name not in picked:
                picked.append(name)
        return wanted

    async def catalog(self, wait: float | None = None) -> Catalog:
        """Every tool an agent may use, described for people, and each MCP server's state;
        servers still starting after `wait` seconds are reported as `starting`."""
        entries: list[CatalogEntry] = [
            LocalToolInfo(
                name=tool.name,
                description=tool.description,
                parameters=tool.parameters,
                source="builtin" if tool.name in _BUILTIN else "relaychat",
            )
            for tool in self._local.values()
        ]
        servers: list[McpServerInfo] = []
        for status in await self.mcp.survey(wait) if self.mcp is not None else []:
            tools = [
                McpToolInfo(
                    name=tool.name,
                    description=tool.description,
                    parameters=tool.parameters,
                    server=status.name,
                    remote_name=tool.remote_name if isinstance(tool, McpTool) else tool.name,
                )
                for tool in status.tools
            ]
            servers.append(
                McpServerInfo(
                    name=status.name,
                    state=status.state,
                    transport=status.transport,
                    reason=status.reason,
                    error=status.error,
                    stderr=status.stderr,
                    next_attempt_at=status.next_attempt_at,
                    tools=tools,
                )
            )
            entries += tools
            if status.state == McpServerState.FAILED:
                # The flat list's older way of saying a server is down, kept for its readers.
                entries.append(
                    McpServerDown(
                        name=status.name,
                        server=status.name,
                        error=status.error or "",
                        stderr=status.stderr,
                    )
                )
        return Catalog(entries, servers)
