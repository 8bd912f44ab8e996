"""Which tools an agent gets: built-in ones, relaychat's own, and those of its MCP servers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.agent.agent_tools import Recall, Remember, Sender, SendMessage
from relaychat.domain.agent.agents import AgentSpec
from relaychat.errors import AppError
from relaychat.llm.tools.base import Tool, ToolSet
from relaychat.llm.tools.builtin import builtin_tools


class McpTools(Protocol):
    """What the toolbox needs of the MCP manager."""

    def names(self) -> list[str]:
        """Configured MCP server names."""
        ...

    async def tools(self, server: str) -> list[Tool]:
        """The server's tools (starting it on first use)."""
        ...

    async def list_all(self) -> Mapping[str, list[Tool] | AppError]:
        """Every server's tools, or why it cannot start."""
        ...


@dataclass(frozen=True)
class AgentTools:
    """The tools of one agent turn, and the MCP servers left out of it (and why)."""

    tools: ToolSet
    # [{"server": name, "error": why}], as stored in the reply's `metadata.mcp_unavailable`.
    unavailable: list[dict[str, str]] = field(default_factory=list)


class LocalToolInfo(BaseModel):
    """A tool of this instance: built in (`calculator`, `current_time`) or relaychat's own."""

    name: str
    description: str
    parameters: dict[str, Any] = Field(description="The JSON schema of its arguments.")
    source: Literal["builtin", "relaychat"]


class McpToolInfo(BaseModel):
    """A tool of an MCP server."""

    name: str
    description: str
    parameters: dict[str, Any] = Field(description="The JSON schema of its arguments.")
    source: Literal["mcp"] = "mcp"
    server: str


class McpServerDown(BaseModel):
    """An MCP server that cannot start: its tools are unknown, and agents go without them."""

    name: str = Field(description="The server's name.")
    source: Literal["mcp"] = "mcp"
    server: str
    error: str
    stderr: str = Field(description="What the server wrote: usually the real reason it is down.")


# One entry of the catalogue; `source` and the presence of `error` tell them apart.
CatalogEntry = LocalToolInfo | McpToolInfo | McpServerDown
_BUILTIN = frozenset({"calculator", "current_time"})


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
        """Names an agent may list in `tools`."""
        return list(self._local)

    def server_names(self) -> list[str]:
        """Names an agent may list in `mcp_servers`."""
        return self.mcp.names() if self.mcp is not None else []

    async def for_agent(self, agent: AgentSpec) -> AgentTools:
        """The agent's tools. An MCP server that cannot be used (it fails to start, or is no
        longer configured) is left out of this turn rather than failing it; its servers start
        concurrently, so the turn waits for the slowest one at most."""
        tools = [self._local[name] for name in agent.tools if name in self._local]
        unavailable: list[dict[str, str]] = []
        servers = list(agent.mcp_servers) if self.mcp is not None else []
        if self.mcp is not None and servers:
            mcp = self.mcp
            listed = await asyncio.gather(
                *(mcp.tools(server) for server in servers), return_exceptions=True
            )
            for server, result in zip(servers, listed, strict=True):
                if isinstance(result, AppError):
                    unavailable.append({"server": server, "error": result.detail})
                elif isinstance(result, BaseException):
                    raise result
                else:
                    tools.extend(result)
        return AgentTools(ToolSet(tools), unavailable)

    async def catalog(self) -> list[CatalogEntry]:
        """Every tool an agent may use, described for people."""
        entries: list[CatalogEntry] = [
            LocalToolInfo(
                name=tool.name,
                description=tool.description,
                parameters=tool.parameters,
                source="builtin" if tool.name in _BUILTIN else "relaychat",
            )
            for tool in self._local.values()
        ]
        if self.mcp is not None:
            for server, tools in (await self.mcp.list_all()).items():
                if isinstance(tools, AppError):
                    entries.append(
                        McpServerDown(
                            name=server,
                            server=server,
                            error=tools.detail,
                            # The server's own words: usually the real reason it is down.
                            stderr=tools.fields.get("stderr", ""),
                        )
                    )
                    continue
                entries += [
                    McpToolInfo(
                        name=tool.name,
                        description=tool.description,
                        parameters=tool.parameters,
                        server=server,
                    )
                    for tool in tools
                ]
        return entries
