"""MCP servers in agent turns, through the API on both backends: a server that cannot be
used leaves its tools out and says why, without failing the agent; single tools are picked
by the names the catalogue gives."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.services import Services
from relaychat.settings import Settings
from tests.support.backends import Backend, row_counts
from tests.support.chat import agent_conversation, ask, calls, make_agent, messages_of, script
from tests.support.factories import TestUser, make_user
from tests.support.live import write_llm_config
from tests.support.settings import make_settings

# A server that dies at start-up explaining why on stderr, as uvx does without its CA bundle.
BROKEN = (
    "import sys; print('error: invalid peer certificate: UnknownIssuer', file=sys.stderr); "
    "sys.exit(2)"
)


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    """The usual endpoints and `time` server, plus one that crashes, one not installed and
    one whose variable is not set (disabled)."""
    config = write_llm_config(tmp_path / "relaychat.yaml", fake_llm)
    extra = {
        "broken": {"command": sys.executable, "args": ["-c", BROKEN]},
        "missing": {"command": "uvx-not-installed", "args": ["mcp-server-time"]},
        "search": {"url": "${RELAYCHAT_TEST_NEVER_SET_MCP_URL}"},
    }
    with config.open("a") as file:
        for name, server in extra.items():
            # JSON is YAML: no quoting to get wrong.
            file.write(f"  {name}: {json.dumps(server)}\n")
    return make_settings(backend, tmp_path, config_path=config)


async def test_an_unavailable_server_leaves_its_tools_out_and_the_agent_answers(
    client: httpx.AsyncClient, services: Services, fake_llm: FakeLLM
) -> None:
    user = await make_user(client)
    _, cid = await agent_conversation(
        client, user, tools=["calculator"], mcp_servers=["broken", "time", "missing"]
    )
    text = script(
        calls(("time__get_current_time", {"timezone": "UTC"})),
        "It is late.",
    )
    events: list[dict[str, Any]] = []
    async with services.bus.subscribe(user.id, conversation_id=cid) as stream:
        posted = await ask(client, user, cid, text + "\nwhat time is it?")
        async for envelope in stream:
            events.append(json.loads(envelope.frame.split(b"data: ", 1)[1]))
            if envelope.type in {"message.completed", "message.failed"}:
                break

    reply = (await messages_of(client, user, cid))[-1]
    assert reply["message_id"] == posted["response_message_id"]
    assert reply["status"] == "complete", reply
    assert reply["text"] == "It is late."
    assert reply["content"][1]["is_error"] is False  # the working server answered
    # The model was offered the tools of the servers that work, and only those.
    offered = {tool["function"]["name"] for tool in fake_llm.requests[-1].body["tools"]}
    assert offered == {"calculator", "time__get_current_time", "time__convert_time"}

    unavailable = reply["metadata"]["mcp_unavailable"]
    assert [entry["server"] for entry in unavailable] == ["broken", "missing"]
    assert "invalid peer certificate: UnknownIssuer" in unavailable[0]["error"]
    assert "command 'uvx-not-installed' not found" in unavailable[1]["error"]
    announced = [e for e in events if e["type"] == "message.mcp_unavailable"]
    assert announced == [
        {
            "type": "message.mcp_unavailable",
            "conversation_id": cid,
            "message_id": reply["message_id"],
            "mcp_unavailable": unavailable,
        }
    ]
    completed = next(e for e in events if e["type"] == "message.completed")
    assert completed["message"]["metadata"]["mcp_unavailable"] == unavailable
    assert events.index(announced[0]) < events.index(completed)


async def test_an_agent_whose_only_server_is_down_still_answers(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    _, cid = await agent_conversation(client, user, mcp_servers=["broken"])

    await ask(client, user, cid, "hello")

    reply = (await messages_of(client, user, cid))[-1]
    assert reply["status"] == "complete", reply
    assert reply["text"]
    assert [e["server"] for e in reply["metadata"]["mcp_unavailable"]] == ["broken"]


async def test_the_tool_catalog_gives_the_cause_of_an_unavailable_server(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)

    response = await client.get("/api/agents/tools", headers=user.headers)

    assert response.status_code == 200
    entries = {entry["name"]: entry for entry in response.json()["tools"]}
    broken, missing = entries["broken"], entries["missing"]
    assert (broken["source"], broken["server"]) == ("mcp", "broken")
    assert broken["stderr"] == "error: invalid peer certificate: UnknownIssuer"
    assert broken["error"].endswith("error: invalid peer certificate: UnknownIssuer")
    assert "command 'uvx-not-installed' not found" in missing["error"]
    assert "time__get_current_time" in entries


async def catalog(client: httpx.AsyncClient, user: TestUser, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/agents/tools", headers=user.headers, params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_tool_picked_from_the_catalog_is_what_the_agent_gets(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    user = await make_user(client)
    servers = {server["name"]: server for server in (await catalog(client, user))["servers"]}
    assert servers["time"]["state"] == "running"
    picked = next(t for t in servers["time"]["tools"] if t["remote_name"] == "get_current_time")
    assert picked["name"] == "time__get_current_time"

    aid, cid = await agent_conversation(client, user, tools=["calculator", picked["name"]])
    stored = (await client.get(f"/api/agents/{aid}", headers=user.headers)).json()
    assert (stored["tools"], stored["mcp_servers"]) == (["calculator", picked["name"]], [])
    await ask(
        client,
        user,
        cid,
        script(calls((picked["name"], {"timezone": "Asia/Tokyo"})), "Evening in Tokyo.") + "\n?",
    )

    reply = (await messages_of(client, user, cid))[-1]
    assert reply["status"] == "complete", reply
    # The model was offered the two tools picked, not the server's other one.
    offered = {tool["function"]["name"] for tool in fake_llm.requests[-1].body["tools"]}
    assert offered == {"calculator", "time__get_current_time"}
    result = reply["content"][1]
    assert (result["name"], result["is_error"]) == ("time__get_current_time", False)
    assert json.loads(result["content"])["timezone"] == "Asia/Tokyo"
    assert "mcp_unavailable" not in reply["metadata"]


async def test_the_catalog_gives_each_servers_state_and_why(client: httpx.AsyncClient) -> None:
    user = await make_user(client)

    servers = {server["name"]: server for server in (await catalog(client, user))["servers"]}

    assert list(servers) == ["time", "broken", "missing", "search"]
    assert {name: server["state"] for name, server in servers.items()} == {
        "time": "running",
        "broken": "failed",
        "missing": "failed",
        "search": "disabled",
    }
    broken = servers["broken"]
    # The server's own words, not the SDK's "Connection closed".
    assert broken["reason"] == "error: invalid peer certificate: UnknownIssuer"
    assert broken["stderr"] == "error: invalid peer certificate: UnknownIssuer"
    assert broken["transport"] == "stdio" and broken["tools"] == []
    assert broken["next_attempt_at"] is not None
    assert servers["missing"]["reason"].startswith("command 'uvx-not-installed' not found")
    assert servers["search"]["reason"] == (
        "environment variable RELAYCHAT_TEST_NEVER_SET_MCP_URL is not set"
    )
    assert servers["time"]["reason"] is None and servers["time"]["error"] is None


async def test_a_server_still_starting_is_listed_as_starting(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)

    listing = await catalog(client, user, wait=0)

    # Nothing had started them: with no wait, every usable server is still starting.
    states = {server["name"]: server["state"] for server in listing["servers"]}
    assert states == {
        "time": "starting",
        "broken": "starting",
        "missing": "starting",
        "search": "disabled",
    }
    assert not any(entry.get("server") == "time" for entry in listing["tools"])
    # The starts go on: the next look (waiting) finds them done, each started once.
    states = {s["name"]: s["state"] for s in (await catalog(client, user))["servers"]}
    assert states["time"] == "running" and states["broken"] == "failed"
    assert services.mcp.starts("time") == 1


async def test_tools_of_a_server_that_is_down_are_saved_and_left_out_with_a_note(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    user = await make_user(client)
    # Saved although `broken` is down and `search` disabled: they may come back.
    aid, cid = await agent_conversation(
        client,
        user,
        tools=["calculator", "broken__lookup", "search__query", "time__get_current_time"],
    )
    text = script(calls(("broken__lookup", {"q": "x"})), "I could not look it up.")

    await ask(client, user, cid, text + "\nlook it up")

    reply = (await messages_of(client, user, cid))[-1]
    assert reply["status"] == "complete", reply
    offered = {tool["function"]["name"] for tool in fake_llm.requests[-1].body["tools"]}
    assert offered == {"calculator", "time__get_current_time"}
    unavailable = {entry["server"]: entry for entry in reply["metadata"]["mcp_unavailable"]}
    assert unavailable["broken"]["tools"] == ["broken__lookup"]
    assert unavailable["broken"]["reason"] == "error: invalid peer certificate: UnknownIssuer"
    assert unavailable["search"]["tools"] == ["search__query"]
    assert unavailable["search"]["reason"] == (
        "environment variable RELAYCHAT_TEST_NEVER_SET_MCP_URL is not set"
    )
    # A model that calls the missing tool anyway is told why it is missing.
    call, result = reply["content"][0], reply["content"][1]
    assert (call["name"], result["is_error"]) == ("broken__lookup", True)
    assert result["content"] == (
        "error: broken__lookup is unavailable: error: invalid peer certificate: UnknownIssuer"
    )
    stored = (await client.get(f"/api/agents/{aid}", headers=user.headers)).json()
    assert "broken__lookup" in stored["tools"]


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        (["ghost__tool"], "unknown tools: ghost__tool"),
        (["time"], "unknown tools: time"),
        (
            ["time__get_current_tme"],
            "unknown tools: time__get_current_tme; MCP server time offers "
            "time__convert_time, time__get_current_time",
        ),
    ],
    ids=["unknown-server", "server-name-alone", "misspelt-tool-of-a-running-server"],
)
async def test_unknown_mcp_tools_are_refused(
    client: httpx.AsyncClient, clean_backend: Backend, tools: list[str], message: str
) -> None:
    user = await make_user(client)
    await catalog(client, user)  # `time` is running and its tools are known
    agent = await make_agent(client, user)
    before = await row_counts(clean_backend)

    created = await client.post(
        "/api/agents", json={"name": "x", "endpoint": "fake", "tools": tools}, headers=user.headers
    )
    patched = await client.patch(
        f"/api/agents/{agent['agent_id']}", json={"tools": tools}, headers=user.headers
    )

    for response in (created, patched):
        assert response.status_code == 422, response.text
        assert (response.json()["field"], response.json()["detail"]) == ("tools", message)
    assert await row_counts(clean_backend) == before


async def test_a_patch_picks_single_tools_and_whole_servers_keep_working(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    user = await make_user(client)
    aid, cid = await agent_conversation(client, user, mcp_servers=["time"])
    patched = await client.patch(
        f"/api/agents/{aid}",
        json={"tools": ["time__convert_time"], "mcp_servers": ["search"]},
        headers=user.headers,
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["tools"], patched.json()["mcp_servers"]) == (
        ["time__convert_time"],
        ["search"],
    )

    await ask(client, user, cid, "hello")

    offered = {tool["function"]["name"] for tool in fake_llm.requests[-1].body["tools"]}
    assert offered == {"time__convert_time"}
    reply = (await messages_of(client, user, cid))[-1]
    # A whole server left out has no `tools`: which of its tools it would give is unknown.
    [entry] = reply["metadata"]["mcp_unavailable"]
    assert entry["server"] == "search" and "tools" not in entry
