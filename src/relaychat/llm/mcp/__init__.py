"""MCP servers (stdio and streamable HTTP, through the official SDK) as tools for agents."""

from relaychat.llm.mcp.config import (
    HttpServerConfig,
    McpServerConfig,
    StdioServerConfig,
    load_mcp_config,
    parse_mcp_config,
)
from relaychat.llm.mcp.manager import (
    McpManager,
    McpServerNotFound,
    McpServerUnavailable,
    ServerStatus,
)
from relaychat.llm.mcp.tools import McpTool

__all__ = [
    "HttpServerConfig",
    "McpManager",
    "McpServerConfig",
    "McpServerNotFound",
    "McpServerUnavailable",
    "McpTool",
    "ServerStatus",
    "StdioServerConfig",
    "load_mcp_config",
    "parse_mcp_config",
]
