"""MCP over streamable HTTP, against an SDK MCPServer run in a subprocess on loopback."""

from __future__ import annotations

import socket

import pytest

from relaychat.llm.mcp import McpManager, McpServerConfig, McpServerUnavailable, parse_mcp_config
from relaychat.llm.tools.base import ToolError, ToolSet
from tests.support.mcp import CONTEXT, http_server, managing, time_server


def web_config(port: int, **extra: object) -> dict[str, McpServerConfig]:
    """One HTTP server `web`, configured as in relaychat.yaml."""
    section = {"web": {"url": f"http://127.0.0.1:{port}/mcp", **extra}}
    return parse_mcp_config(section, {"TEST_TOKEN": "t0ken"})


def web(port: int, **extra: object) -> McpManager:
    return McpManager(web_config(port, **extra))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_lists_and_calls_tools(http_port: int) -> None:
    async with managing(web(http_port)) as manager:
        tools = {tool.name: tool for tool in await manager.tools("web")}

        assert set(tools) == {"web__add", "web__fail", "web__slow", "web__header"}
        assert tools["web__add"].description == "Add two numbers."
        assert set(tools["web__add"].parameters["properties"]) == {"a", "b"}
        assert await tools["web__add"].run({"a": 2, "b": 40.5}, CONTEXT) == "42.5"
        assert await manager.call("web", "add", {"a": -1, "b": 1}) == "0"
        assert manager.starts("web") == 1


async def test_an_is_error_result_raises_tool_error(http_port: int) -> None:
    async with managing(web(http_port)) as manager:
        [fail] = [tool for tool in await manager.tools("web") if tool.name == "web__fail"]

        with pytest.raises(ToolError, match="it broke"):
            await fail.run({"message": "it broke"}, CONTEXT)

        outcome = await ToolSet([fail]).call("web__fail", {"message": "again"}, CONTEXT)
        assert outcome.is_error
        assert "again" in outcome.content


async def test_a_call_longer_than_the_timeout_fails_and_the_session_survives(
    http_port: int,
) -> None:
    async with managing(web(http_port, timeout_seconds=0.5)) as manager:
        tools = ToolSet(await manager.tools("web"))

        outcome = await tools.call("web__slow", {"seconds": 60}, CONTEXT)

        assert outcome.is_error
        assert outcome.content == "error: MCP server web timed out after 0.5 s"
        assert (await tools.call("web__add", {"a": 1, "b": 2}, CONTEXT)).content == "3"
        assert manager.starts("web") == 1


async def test_configured_headers_reach_the_server(http_port: int) -> None:
    headers = {"X-Relaychat-Test": "Bearer ${TEST_TOKEN}"}
    async with managing(web(http_port, headers=headers)) as manager:
        text = await manager.call("web", "header", {"name": "X-Relaychat-Test"})

        assert text == "Bearer t0ken"


async def test_a_server_that_is_down_is_unavailable_and_others_still_list() -> None:
    servers = {"time": time_server(), **web_config(free_port())}
    async with managing(McpManager(servers)) as manager:
        with pytest.raises(McpServerUnavailable, match="MCP server web failed to start"):
            await manager.tools("web")

        listing = {status.name: status for status in await manager.survey()}
        assert listing["time"].state == "running"
        assert len(listing["time"].tools) == 2
        web = listing["web"]
        assert (web.state, web.transport) == ("failed", "http")
        assert web.reason == "ConnectError: All connection attempts failed"


@pytest.mark.parametrize("legacy", [False, True], ids=["2026-sessionless", "2025-session"])
async def test_a_restarted_server_is_reconnected(legacy: bool) -> None:
    port = free_port()
    async with managing(web(port)) as manager:
        with http_server(port, legacy=legacy):
            assert await manager.call("web", "add", {"a": 1, "b": 1}) == "2"
        with http_server(port, legacy=legacy):
            assert await manager.call("web", "add", {"a": 2, "b": 2}) == "4"

        # A 2025 server forgot the session, so a new one was started; 2026 has no sessions.
        assert manager.starts("web") == (2 if legacy else 1)
