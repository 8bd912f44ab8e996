"""How each MCP server stands, as `GET /api/agents/tools` shows it: running with its tools,
starting, failed with the reason in the server's own words, or disabled."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from relaychat.llm.mcp import HttpServerConfig, McpManager, McpServerUnavailable
from relaychat.llm.mcp.manager import last_words
from tests.support.live import serving
from tests.support.mcp import managing, time_server


async def test_a_server_being_started_is_starting_and_its_start_goes_on() -> None:
    async with managing(McpManager({"time": time_server()})) as manager:
        [starting] = await manager.survey(wait=0)
        assert (starting.state, starting.transport, starting.tools) == ("starting", "stdio", [])
        assert manager.known_tools("time") is None

        # The next look waits for the same start rather than beginning another.
        [running] = await manager.survey()

        assert running.state == "running"
        assert [tool.name for tool in running.tools] == [
            "time__get_current_time",
            "time__convert_time",
        ]
        assert manager.known_tools("time") == ["time__get_current_time", "time__convert_time"]
        assert manager.starts("time") == 1


async def test_a_disabled_server_is_listed_with_why_and_refuses_use() -> None:
    why = "environment variable SEARCH_TOKEN is not set"
    async with managing(McpManager({}, disabled={"search": why})) as manager:
        [status] = await manager.survey()
        with pytest.raises(McpServerUnavailable) as caught:
            await manager.tools("search")

    assert (status.name, status.state, status.transport) == ("search", "disabled", None)
    assert status.reason == why
    assert status.error == f"MCP server search is disabled: {why}"
    assert caught.value.reason == why


async def test_an_http_error_status_is_the_reason() -> None:
    async def refuse(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("no token", status_code=401)

    app = Starlette(routes=[Route("/mcp", refuse, methods=["GET", "POST", "DELETE"])])
    async with serving(app) as base:
        config = HttpServerConfig(url=f"{base}/mcp", timeout_seconds=10)
        async with managing(McpManager({"web": config})) as manager:
            [status] = await manager.survey()

    assert (status.state, status.transport) == ("failed", "http")
    assert status.reason is not None
    assert status.reason.startswith("the server answered HTTP 401 Unauthorized")
    assert status.error == f"MCP server web failed to start: {status.reason}"


async def test_a_server_that_dies_with_a_traceback_gives_its_last_line() -> None:
    crash = time_server(args=["-c", "import mcp_server_that_is_not_installed"])
    async with managing(McpManager({"crash": crash})) as manager:
        [status] = await manager.survey()

    assert status.state == "failed"
    assert (
        status.reason == "ModuleNotFoundError: No module named 'mcp_server_that_is_not_installed'"
    )
    assert status.stderr.startswith("Traceback (most recent call last):")
    assert status.next_attempt_at is not None


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        ("", ""),
        ("starting\nerror: no such package\n\n", "error: no such package"),
        (
            "error: Request failed after 3 retries\n"
            "  Caused by: invalid peer certificate: UnknownIssuer",
            "Caused by: invalid peer certificate: UnknownIssuer",
        ),
        (
            "/srv/index.js:1\nthrow new Error('no API key')\n^\n\nError: no API key\n"
            "    at Object.<anonymous> (/srv/index.js:1:7)\n"
            "    at Module._compile (node:internal/modules/cjs/loader:1256:14)\n\n"
            "Node.js v20.11.0",
            "Error: no API key",
        ),
        (
            'Traceback (most recent call last):\n  File "<string>", line 1',
            'File "<string>", line 1',
        ),
    ],
    ids=["silent", "last-line", "uv", "node", "only-a-trace"],
)
def test_the_reason_is_the_last_line_that_is_not_a_stack_trace(stderr: str, reason: str) -> None:
    assert last_words(stderr) == reason
