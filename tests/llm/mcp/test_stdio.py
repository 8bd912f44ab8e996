"""MCP over stdio, against the real mcp-server-time package."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from relaychat.llm.mcp import McpManager, McpServerNotFound, McpServerUnavailable
from relaychat.llm.tools.base import ToolError, ToolSet
from tests.support.mcp import (
    CONTEXT,
    child_processes,
    managing,
    time_server,
    wait_for_child,
)

MARKER = "mcp_server_time"


async def test_lists_and_calls_the_time_server() -> None:
    async with managing(McpManager({"time": time_server()})) as manager:
        tools = {tool.name: tool for tool in await manager.tools("time")}

        assert set(tools) == {"time__get_current_time", "time__convert_time"}
        current = tools["time__get_current_time"]
        assert "time" in current.description.lower()
        assert current.parameters["type"] == "object"
        assert current.parameters["required"] == ["timezone"]

        text = await current.run({"timezone": "Europe/Paris"}, CONTEXT)
        result = json.loads(text)
        assert result["timezone"] == "Europe/Paris"
        assert result["datetime"][:2] == "20"
        assert result["day_of_week"]


async def test_one_server_process_serves_every_call() -> None:
    async with managing(McpManager({"time": time_server()})) as manager:
        # Concurrent first uses start the server once.
        listings = await asyncio.gather(*(manager.tools("time") for _ in range(5)))
        assert all(len(tools) == 2 for tools in listings)
        pids = child_processes(MARKER)
        assert len(pids) == 1

        for timezone in ("UTC", "Asia/Tokyo", "America/New_York"):
            text = await manager.call("time", "get_current_time", {"timezone": timezone})
            assert json.loads(text)["timezone"] == timezone
        await manager.tools("time")

        assert manager.starts("time") == 1
        assert child_processes(MARKER) == pids


async def test_a_killed_server_is_restarted_by_the_next_call() -> None:
    async with managing(McpManager({"time": time_server()})) as manager:
        tools = ToolSet(await manager.tools("time"))
        [first] = child_processes(MARKER)

        os.kill(first, signal.SIGKILL)
        outcome = await tools.call("time__get_current_time", {"timezone": "UTC"}, CONTEXT)

        assert not outcome.is_error, outcome.content
        assert json.loads(outcome.content)["timezone"] == "UTC"
        assert manager.starts("time") == 2
        [second] = child_processes(MARKER)
        assert second != first


async def test_a_killed_server_is_restarted_by_the_next_listing() -> None:
    async with managing(McpManager({"time": time_server()})) as manager:
        await manager.tools("time")
        [first] = child_processes(MARKER)

        os.kill(first, signal.SIGKILL)

        assert len(await manager.tools("time")) == 2
        assert manager.starts("time") == 2


async def test_a_tool_error_reaches_the_model() -> None:
    async with managing(McpManager({"time": time_server()})) as manager:
        tools = ToolSet(await manager.tools("time"))

        outcome = await tools.call("time__get_current_time", {"timezone": "Mars/Olympus"}, CONTEXT)

        assert outcome.is_error
        assert "Mars/Olympus" in outcome.content
        # A failed call is not a crash: the same server keeps serving.
        assert manager.starts("time") == 1


async def test_a_server_that_cannot_start_is_not_hammered() -> None:
    now = [1000.0]
    broken = time_server(command=sys.executable, args=["-c", "import sys; sys.exit(3)"])
    manager = McpManager({"broken": broken}, retry_after=30, clock=lambda: now[0])
    async with managing(manager):
        with pytest.raises(McpServerUnavailable) as caught:
            await manager.tools("broken")
        assert caught.value.code == "mcp_server_unavailable"
        assert caught.value.status == 503
        assert "MCP server broken failed to start" in caught.value.detail
        assert manager.starts("broken") == 1

        # Within the back-off, uses fail at once without starting anything.
        with pytest.raises(McpServerUnavailable, match="next attempt in 30 s"):
            await manager.tools("broken")
        with pytest.raises(ToolError, match="failed to start"):
            await manager.call("broken", "anything", {})
        assert manager.starts("broken") == 1

        now[0] += 31
        with pytest.raises(McpServerUnavailable):
            await manager.tools("broken")
        assert manager.starts("broken") == 2


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        # The README's `command: uvx` on a machine without uv.
        (
            {"command": "uvx-not-installed"},
            "command 'uvx-not-installed' not found on relaychat's PATH; install it there, "
            "or give its full path",
        ),
        (
            {"command": "uvx-not-installed", "env": {"PATH": "/nowhere"}},
            "command 'uvx-not-installed' not found on the PATH in its `env`",
        ),
        ({"command": "/nonexistent/mcp-server"}, "command '/nonexistent/mcp-server' does not"),
        ({"cwd": "/nonexistent/dir"}, "working directory '/nonexistent/dir' does not exist"),
    ],
    ids=["not-on-path", "not-on-env-path", "no-such-file", "no-such-cwd"],
)
async def test_a_server_that_cannot_be_spawned_names_what_is_missing(
    overrides: dict[str, object], reason: str
) -> None:
    async with managing(McpManager({"gone": time_server(**overrides)})) as manager:
        with pytest.raises(McpServerUnavailable) as caught:
            await manager.tools("gone")

    assert caught.value.detail.startswith(f"MCP server gone failed to start: {reason}")


async def test_a_script_whose_interpreter_is_missing_says_so(tmp_path: Path) -> None:
    script = tmp_path / "server"
    script.write_text("#!/nonexistent/python\n")
    script.chmod(0o755)
    async with managing(McpManager({"s": time_server(command=str(script))})) as manager:
        with pytest.raises(McpServerUnavailable, match="the interpreter on its #! line"):
            await manager.tools("s")


async def test_the_tail_of_the_servers_stderr_explains_a_failed_start() -> None:
    # What uvx says when the child's environment lost SSL_CERT_FILE, after some noise.
    code = (
        "import sys\n"
        "for i in range(40): print(f'noise {i}', file=sys.stderr)\n"
        "print('error: Request failed after 3 retries', file=sys.stderr)\n"
        "print('  Caused by: invalid peer certificate: UnknownIssuer', file=sys.stderr)\n"
        "sys.exit(2)"
    )
    broken = time_server(args=["-c", code])
    async with managing(McpManager({"broken": broken})) as manager:
        with pytest.raises(McpServerUnavailable) as caught:
            await manager.tools("broken")
        [again] = await manager.survey()

    error = caught.value
    lines = error.stderr.splitlines()
    assert lines[-2:] == [
        "error: Request failed after 3 retries",
        "  Caused by: invalid peer certificate: UnknownIssuer",
    ]
    assert len(lines) == 20  # the tail, not everything
    assert "noise 0" not in error.stderr
    assert error.detail.endswith("invalid peer certificate: UnknownIssuer")
    assert error.to_problem()["stderr"] == error.stderr
    # The reason to show first is the server's own last words.
    assert error.reason == "Caused by: invalid peer certificate: UnknownIssuer"
    # Within the back-off the cause is still given, without starting the server again.
    assert (again.state, again.reason) == ("failed", error.reason)
    assert again.stderr == error.stderr
    assert again.next_attempt_at is not None
    assert manager.starts("broken") == 1


async def test_secrets_given_to_a_server_are_redacted_from_its_stderr() -> None:
    code = "import os, sys; print('token is', os.environ['API_TOKEN'], file=sys.stderr); exit(1)"
    broken = time_server(args=["-c", code], env={"API_TOKEN": "tok-12345"})
    async with managing(McpManager({"broken": broken})) as manager:
        with pytest.raises(McpServerUnavailable) as caught:
            await manager.tools("broken")

    assert caught.value.stderr == "token is [redacted]"
    assert "tok-12345" not in caught.value.detail


async def test_a_server_that_never_answers_times_out_and_is_stopped() -> None:
    mute = time_server(args=["-c", "import time; time.sleep(120)"], timeout_seconds=0.5)
    async with managing(McpManager({"mute": mute})) as manager:
        with pytest.raises(McpServerUnavailable, match=r"did not start within 0\.5 s"):
            await manager.tools("mute")
        assert child_processes("time.sleep(120)") == []


async def test_survey_reports_servers_that_cannot_start() -> None:
    broken = time_server(command=sys.executable, args=["-c", "raise SystemExit(1)"])
    async with managing(McpManager({"time": time_server(), "broken": broken})) as manager:
        listing = await manager.survey()

        assert manager.names() == ["time", "broken"]
        time_status, broken_status = listing
        assert (time_status.name, time_status.state, time_status.reason) == (
            "time",
            "running",
            None,
        )
        assert [tool.name for tool in time_status.tools] == [
            "time__get_current_time",
            "time__convert_time",
        ]
        assert (broken_status.name, broken_status.state) == ("broken", "failed")
        assert broken_status.error is not None and "failed to start" in broken_status.error
        # It wrote nothing: the reason says so, rather than the SDK's "Connection closed".
        assert broken_status.reason == (
            "the process closed its stdout during start-up (usually: it exited), "
            "writing nothing to stderr"
        )


async def test_unknown_server() -> None:
    async with managing(McpManager({})) as manager:
        with pytest.raises(McpServerNotFound) as caught:
            await manager.tools("nope")
        assert caught.value.code == "mcp_server_not_found"


async def test_aclose_stops_every_server_process() -> None:
    manager = McpManager({"a": time_server(), "b": time_server()})
    await asyncio.gather(manager.tools("a"), manager.tools("b"))
    assert len(child_processes(MARKER)) == 2

    await manager.aclose()

    assert child_processes(MARKER) == []
    with pytest.raises(McpServerUnavailable, match="shut down"):
        await manager.tools("a")
    await manager.aclose()


async def test_a_caller_cancelled_during_start_leaves_no_process() -> None:
    mute = time_server(args=["-c", "import time; time.sleep(120)"], timeout_seconds=60)
    async with managing(McpManager({"mute": mute, "time": time_server()})) as manager:
        listing = asyncio.create_task(manager.tools("mute"))
        await wait_for_child("time.sleep(120)")

        listing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listing

        assert child_processes("time.sleep(120)") == []
        # Cancelling is not a failure to start: nothing waits out a back-off.
        assert manager.starts("mute") == 1
        assert len(await manager.tools("time")) == 2
