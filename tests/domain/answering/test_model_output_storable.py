"""Text from a model (reply, tool call arguments, title) is stored alike on both databases:
a NUL is dropped and a lone surrogate becomes U+FFFD, where PostgreSQL would refuse it.
People's input is refused instead (tests/api/test_stored_input.py)."""

from __future__ import annotations

import asyncio
import json

import httpx

from relaychat.devtools.fake_config import FakeConfig
from relaychat.devtools.fake_llm import FakeLLM
from relaychat.services import Services
from tests.support.chat import agent_conversation, ask, calls, messages_of, script
from tests.support.factories import make_conversation, make_user

UNSTORABLE = "Odd\x00 words \ud800 here"
STORED = "Odd words \ufffd here"


async def test_a_reply_and_its_title_are_stored_alike(
    client: httpx.AsyncClient, services: Services, fake_llm: FakeLLM
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    config = fake_llm.state.config
    # Every request of this test (the reply and the title) answers the unstorable text.
    fake_llm.state.config = FakeConfig(reply=UNSTORABLE)
    try:
        async with services.bus.subscribe(user.id, conversation_id=cid) as events:
            posted = await ask(client, user, cid, "Hello")
            async with asyncio.timeout(30):
                async for envelope in events:
                    if envelope.type == "conversation.updated":
                        break
    finally:
        fake_llm.state.config = config
    reply = (await messages_of(client, user, cid))[-1]
    assert reply["message_id"] == posted["response_message_id"]
    assert (reply["status"], reply["text"]) == ("complete", STORED)
    title = (await client.get(f"/api/convos/{cid}", headers=user.headers)).json()["title"]
    assert title == STORED


async def test_tool_call_arguments_are_stored_alike(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    _, cid = await agent_conversation(client, user, tools=["calculator"])
    text = script(calls(("calculator", {"expression": "17 * 23\x00", "note\ud800": 1})), "Done.")
    await ask(client, user, cid, text + "\nwhat is 17*23?")
    reply = (await messages_of(client, user, cid))[-1]
    assert reply["status"] == "complete", reply
    call = next(p for p in reply["content"] if p["type"] == "tool_call")
    assert call["arguments"] == {"expression": "17 * 23", "note\ufffd": 1}
    assert "\\u0000" not in json.dumps(reply) and "\\ud800" not in json.dumps(reply)
