"""A streamable HTTP MCP server for the tests, built with the SDK's MCPServer.

Run as `python -m tests.llm.mcp.http_server [PORT] [--legacy]`: it binds 127.0.0.1 (an
ephemeral port unless PORT is given), prints `PORT <n>` once it listens, and
serves until it is terminated. `--legacy` refuses the 2026 `server/discover` probe, so
clients fall back to the 2025 initialize handshake and its HTTP sessions.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("relaychat-test-http", log_level="WARNING")


@server.tool()
def add(a: float, b: float) -> str:
    """Add two numbers."""
    return f"{a + b:g}"


@server.tool()
def fail(message: str) -> str:
    """Always fails with the given message."""
    raise ToolError(message)


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await anyio.sleep(seconds)
    return "done"


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The value of one HTTP request header, as the server received it."""
    headers = ctx.headers or {}
    return headers.get(name.lower(), "<missing>")


def legacy_only(app: Any) -> Any:
    """Wrap an ASGI app so that it answers `server/discover` as a 2025-era server would."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        messages = []
        while True:
            message = await receive()
            messages.append(message)
            if not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in messages)
        if b'"server/discover"' in body:
            request = json.loads(body)
            error = {"code": -32601, "message": "Method not found"}
            reply = json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": error}).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": reply})
            return

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await app(scope, replay, send)

    return wrapped


def main() -> None:
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    port = int(args[0]) if args else 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    app: Any = server.streamable_http_app()
    if "--legacy" in sys.argv:
        app = legacy_only(app)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    sock.listen()
    # Connections made from now on wait in the backlog until uvicorn accepts them.
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
