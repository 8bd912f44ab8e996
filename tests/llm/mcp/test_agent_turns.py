"""MCP servers in agent turns, through the API on both backends: a server that cannot be
used leaves its tools out and says why, without failing the agent."""

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
from tests.support.backends import Backend
from tests.support.chat import agent_conversation, ask, calls, messages_of, script
from tests.support.factories import make_user
from tests.support.live import write_llm_config
from tests.support.settings import make_settings

# A server that dies at start-up explaining why on stderr, as uvx does without its CA bundle.
BROKEN = (
    "import sys; print('error: invalid peer certificate: UnknownIssuer', file=sys.stderr); "
    "sys.exit(2)"
)


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    """The usual endpoints and `time` server, plus one that crashes and one not installed."""
    config = write_llm_config(tmp_path / "relaychat.yaml", fake_llm)
    extra = {
        "broken": {"command": sys.executable, "args": ["-c", BROKEN]},
        "missing": {"command": "uvx-not-installed", "args": ["mcp-server-time"]},
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
