"""A stdio MCP server for the tests that reports the environment it was started with.

Run as `python tests/llm/mcp/env_server.py`; its one tool, `environment`, answers the
process's variables as a JSON object.
"""

from __future__ import annotations

import json
import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("relaychat-test-env", log_level="WARNING")


@server.tool()
def environment() -> str:
    """The server process's environment variables, as JSON."""
    return json.dumps(dict(os.environ))


if __name__ == "__main__":
    server.run("stdio")
