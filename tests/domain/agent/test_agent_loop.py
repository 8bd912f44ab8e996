"""The agent loop: tools called, results fed back, parts stored and streamed; memory and
messages between conversations, always scoped to the owner."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from relaychat.llm.tools.base import Tool, ToolContext
from relaychat.services import Services
from relaychat.settings import Settings
from tests.support.backends import Backend
from tests.support.chat import (
    agent_conversation,
    ask,
    calls,
    make_agent,
    messages_of,
    script,
)
from tests.support.factories import make_conversation, make_user
from tests.support.workers import second_worker


async def test_tools_are_called_in_order_stored_and_streamed(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    _, cid = await agent_conversation(client, user, tools=["calculator", "current_time"])
    text = script(
        calls(("calculator", {"expression": "17 * 23"})),
        calls(("current_time", {"timezone": "UTC"})),
        "The answer is 391.",
    )
    seen: list[str] = []
    async with services.bus.subscribe(user.id, conversation_id=cid) as events:
        posted = await ask(client, user, cid, text + "\nwhat is 17*23?")
        async for envelope in events:
            seen.append(envelope.type)
            if envelope.type == "message.completed":
                break
    reply = (await messages_of(client, user, cid))[-1]
    assert reply["message_id"] == posted["response_message_id"]
    kinds = [(p["type"], p.get("name")) for p in reply["content"]]
    assert kinds == [
        ("tool_call", "calculator"),
        ("tool_result", "calculator"),
        ("tool_call", "current_time"),
        ("tool_result", "current_time"),
        ("text", None),
    ]
    calc_call, calc_result = reply["content"][0], reply["content"][1]
    assert calc_call["arguments"] == {"expression": "17 * 23"}
    assert (calc_result["content"], calc_result["is_error"]) == ("391", False)
    assert calc_result["tool_call_id"] == calc_call["id"]
    assert reply["content"][3]["content"].endswith("+00:00")
    assert reply["text"] == "The answer is 391."
    live = [t for t in seen if t.startswith("message.tool")]
    assert live == ["message.tool_call", "message.tool_result"] * 2


async def test_a_failing_tool_is_reported_to_the_model_and_the_reply_goes_on(
    client: httpx.AsyncClient, fake_llm: Any
) -> None:
    user = await make_user(client)
    _, cid = await agent_conversation(client, user, tools=["calculator"])
    marker = "bad-expression-5521"
    text = script(calls(("calculator", {"expression": "__import__('os')"})), "Sorry.")
    await ask(client, user, cid, f"{text}\n{marker}")
    reply = (await messages_of(client, user, cid))[-1]
    result = reply["content"][1]
    assert result["is_error"] is True
    assert result["content"].startswith("error:")
    assert (reply["status"], reply["text"]) == ("complete", "Sorry.")
    # The error went back to the model as the tool's result.
    # (A request without a JSON body, such as a model listing, has no messages.)
    asked = [r.body for r in fake_llm.requests if marker in str((r.body or {}).get("messages"))]
    second = asked[-1]
    assert second["messages"][-1]["role"] == "tool"
    assert second["messages"][-1]["content"].startswith("error:")


async def test_max_steps_ends_the_loop(client: httpx.AsyncClient, services: Services) -> None:
    services.chat.max_steps = 2
    user = await make_user(client)
    _, cid = await agent_conversation(client, user, tools=["calculator"])
    loop = [calls(("calculator", {"expression": f"{i}+1"})) for i in range(5)]
    posted = await ask(client, user, cid, script(*loop) + "\nloop forever")
    state = (
        await client.get(f"/api/generations/{posted['generation_id']}", headers=user.headers)
    ).json()
    assert (state["status"], state["finish_reason"]) == ("completed", "length")
    reply = (await messages_of(client, user, cid))[-1]
    assert [p["type"] for p in reply["content"]].count("tool_call") == 2


class SlowTool(Tool):
    name = "slow"
    description = "Takes its time."

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        self.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "done"


async def test_abort_stops_a_running_tool(client: httpx.AsyncClient, services: Services) -> None:
    tool = SlowTool()
    assert services.chat.toolbox is not None
    services.chat.toolbox.register(tool)
    user = await make_user(client)
    _, cid = await agent_conversation(client, user, tools=["slow"])
    text = script(calls(("slow", {})), "never") + "\nbe slow"
    posted = (
        await client.post(f"/api/messages/{cid}", json={"text": text}, headers=user.headers)
    ).json()
    await asyncio.wait_for(tool.started.wait(), 30)
    aborted = await client.post(
        f"/api/generations/{posted['generation_id']}/abort", headers=user.headers
    )
    assert aborted.json()["status"] == "aborted"
    assert tool.cancelled
    reply = (await messages_of(client, user, cid))[-1]
    assert reply["status"] == "unfinished"
    assert [p["type"] for p in reply["content"]] == ["tool_call"]


async def test_slow_tool_times_out_into_an_error_result(
    client: httpx.AsyncClient, services: Services
) -> None:
    tool = SlowTool()
    tool.timeout = 0.2
    assert services.chat.toolbox is not None
    services.chat.toolbox.register(tool)
    user = await make_user(client)
    _, cid = await agent_conversation(client, user, tools=["slow"])
    await ask(client, user, cid, script(calls(("slow", {})), "Gave up.") + "\nslow")
    reply = (await messages_of(client, user, cid))[-1]
    assert reply["content"][1]["is_error"] is True
    assert "timed out" in reply["content"][1]["content"]
    assert reply["text"] == "Gave up."


async def test_memory_is_per_user_and_agent_and_survives_a_restart(
    client: httpx.AsyncClient, services: Services, clean_backend: Backend, settings: Settings
) -> None:
    alice, bob = await make_user(client), await make_user(client)
    agent = await make_agent(client, alice, tools=["remember", "recall"], visibility="public")
    aid = agent["agent_id"]
    first = await make_conversation(client, alice, endpoint="agents", agent_id=aid, title="1")
    await ask(
        client,
        alice,
        first["conversation_id"],
        script(calls(("remember", {"key": "colour", "value": "teal"})), "Noted.") + "\nremember",
    )

    # A new process on the same database: the memory is still there.
    restarted = Services.build(settings, engine=clean_backend.engine)
    await restarted.start()
    try:
        from relaychat.app import create_app

        transport = httpx.ASGITransport(app=create_app(services=restarted))
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as other:
            second = await make_conversation(
                other, alice, endpoint="agents", agent_id=aid, title="2"
            )
            await ask(
                other,
                alice,
                second["conversation_id"],
                script(calls(("recall", {"key": "colour"})), "ok") + "\nrecall",
            )
            recalled = (await messages_of(other, alice, second["conversation_id"]))[-1]
            assert recalled["content"][1]["content"] == "teal"

            # Bob uses the same public agent but has his own (empty) memory.
            bobs = await make_conversation(other, bob, endpoint="agents", agent_id=aid, title="3")
            await ask(
                other,
                bob,
                bobs["conversation_id"],
                script(calls(("recall", {})), "ok") + "\nrecall all",
            )
            nothing = (await messages_of(other, bob, bobs["conversation_id"]))[-1]
            assert nothing["content"][1]["content"] == "nothing remembered yet"
    finally:
        await restarted.close()


async def test_send_message_reaches_another_conversation_and_its_agent_answers(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    stranger = await make_user(client)
    _, source = await agent_conversation(client, user, tools=["send_message"])
    target_agent = await make_agent(client, user, name="Receiver")
    target = (
        await make_conversation(
            client, user, endpoint="agents", agent_id=target_agent["agent_id"], title="target"
        )
    )["conversation_id"]
    foreign = (await make_conversation(client, stranger, title="private"))["conversation_id"]
    text = script(
        calls(("send_message", {"conversation_id": target, "text": "ping", "respond": True})),
        calls(("send_message", {"conversation_id": foreign, "text": "leak"})),
        "Sent.",
    )
    await ask(client, user, source, text + "\nrelay this")
    reply = (await messages_of(client, user, source))[-1]
    results = [p for p in reply["content"] if p["type"] == "tool_result"]
    assert results[0]["is_error"] is False and "posted message" in results[0]["content"]
    assert results[1]["is_error"] is True
    assert "not found" in results[1]["content"].lower()

    for _ in range(200):
        received = await messages_of(client, user, target)
        if len(received) == 2 and received[1]["status"] != "streaming":
            break
        await asyncio.sleep(0.05)
    assert received[0]["role"] == "external" and received[0]["text"] == "ping"
    assert received[0]["metadata"]["source"] == "agent"
    assert received[0]["metadata"]["from_conversation_id"] == source
    assert (received[1]["role"], received[1]["status"]) == ("assistant", "complete")
    untouched = await messages_of(client, stranger, foreign)
    assert untouched == []


async def test_agent_changes_reach_every_worker_at_once(
    client: httpx.AsyncClient, services: Services, clean_backend: Backend, settings: Settings
) -> None:
    user = await make_user(client)
    agent = await make_agent(client, user, model="fake-model")
    aid = agent["agent_id"]
    async with second_worker(services, clean_backend, settings) as other:
        async with other.sessionmaker() as session:
            cached = await other.chat.agents.get(session, aid)
        assert cached is not None and cached.model == "fake-model"
        await client.patch(
            f"/api/agents/{aid}", json={"model": "fake-model-mini"}, headers=user.headers
        )
        for _ in range(100):
            async with other.sessionmaker() as session:
                fresh = await other.chat.agents.get(session, aid)
            if fresh is not None and fresh.model == "fake-model-mini":
                break
            await asyncio.sleep(0.02)
        assert fresh is not None and fresh.model == "fake-model-mini"


async def test_calculator_then_an_mcp_tool_then_the_answer(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    _, cid = await agent_conversation(client, user, tools=["calculator"], mcp_servers=["time"])
    text = script(
        calls(("calculator", {"expression": "6 * 7"})),
        calls(("time__get_current_time", {"timezone": "Europe/Paris"})),
        "It is 42 o'clock somewhere.",
    )
    seen: list[dict[str, Any]] = []
    async with services.bus.subscribe(user.id, conversation_id=cid) as events:
        await ask(client, user, cid, text + "\nwhat time?")
        async for envelope in events:
            if envelope.type.startswith("message.tool"):
                seen.append(json.loads(envelope.frame.split(b"data: ", 1)[1]))
            if envelope.type == "message.completed":
                break
    reply = (await messages_of(client, user, cid))[-1]
    parts = reply["content"]
    assert [(p["type"], p.get("name")) for p in parts] == [
        ("tool_call", "calculator"),
        ("tool_result", "calculator"),
        ("tool_call", "time__get_current_time"),
        ("tool_result", "time__get_current_time"),
        ("text", None),
    ]
    assert parts[1]["content"] == "42"
    mcp_result = json.loads(parts[3]["content"])
    assert mcp_result["timezone"] == "Europe/Paris"
    assert parts[3]["is_error"] is False
    assert [e["type"] for e in seen] == ["message.tool_call", "message.tool_result"] * 2
    assert seen[3]["tool_result"]["content"] == parts[3]["content"]
    catalog = (await client.get("/api/agents/tools", headers=user.headers)).json()["tools"]
    assert any(t["name"] == "time__get_current_time" and t["source"] == "mcp" for t in catalog)


async def test_an_agents_reply_and_messages_carry_its_name(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    aid, cid = await agent_conversation(client, user, name="Concierge", tools=["send_message"])
    other = await client.post("/api/convos", json={"title": "inbox"}, headers=user.headers)
    assert other.status_code == 201, other.text
    target = other.json()["conversation_id"]
    text = script(calls(("send_message", {"conversation_id": target, "text": "hi"})), "Sent.")

    posted = await ask(client, user, cid, text)

    reply = (await messages_of(client, user, cid))[-1]
    assert reply["message_id"] == posted["response_message_id"]
    assert (reply["sender"], reply["model"]) == ("Concierge", "fake-model")
    [forwarded] = await messages_of(client, user, target)
    assert forwarded["sender"] == "Concierge"
    assert forwarded["metadata"]["agent_id"] == aid
