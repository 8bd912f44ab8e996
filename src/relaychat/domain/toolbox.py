"""Which tools an agent gets: built-in ones, relaychat's own, and those of its MCP servers."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.agent_tools import Recall, Remember, Sender, SendMessage
from relaychat.domain.agents import AgentSpec
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

    async def list_all(self) -> dict[str, list[Tool] | str]:
        """Every server's tools, or why it cannot start."""
        ...


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

    async def for_agent(self, agent: AgentSpec) -> ToolSet:
        """The agent's tools; an MCP server that cannot start fails the generation clearly."""
        tools = [self._local[name] for name in agent.tools if name in self._local]
        if self.mcp is not None:
            for server in agent.mcp_servers:
                tools.extend(await self.mcp.tools(server))
        return ToolSet(tools)

    async def catalog(self) -> list[dict[str, Any]]:
        """Every tool an agent may use, described for people."""
        entries: list[dict[str, Any]] = [
            {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "source": "builtin" if tool.name in {"calculator", "current_time"} else "relaychat",
            }
            for tool in self._local.values()
        ]
        if self.mcp is not None:
            for server, tools in (await self.mcp.list_all()).items():
                if isinstance(tools, str):
                    entries.append({"name": server, "source": "mcp", "error": tools})
                    continue
                entries += [
                    {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                        "source": "mcp",
                        "server": server,
                    }
                    for tool in tools
                ]
        return entries
