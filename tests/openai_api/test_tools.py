"""`tools` passed through for endpoint models: the caller runs them, the reply's calls come
back in OpenAI's shape, and the follow-up with `role: tool` results gets the answer."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from openai import BadRequestError
from openai.types.chat import (
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
    ChatCompletionUserMessageParam,
)

from relaychat.devtools.fake_llm import FakeLLM
from tests.support.chat import calls, messages_of, script
from tests.support.factories import make_key, make_user
from tests.support.openai_sdk import replies_asked, sdk

WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
OTHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_time", "description": "The time in a city"},
}


async def test_a_tool_round_trip_through_a_stored_conversation(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    marker = str(uuid.uuid4())
    question: ChatCompletionUserMessageParam = {
        "role": "user",
        "content": script(calls(("get_weather", {"city": "Paris"})), "Sunny in Paris.")
        + f"\nWeather in Paris? {marker}",
    }
    async with sdk(live_url, key.secret) as openai:
        stream = await openai.chat.completions.create(
            model="fake/fake-model",
            messages=[question],
            tools=[WEATHER],
            tool_choice="auto",
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
        [call] = [
            c for chunk in chunks if chunk.choices for c in chunk.choices[0].delta.tool_calls or ()
        ]
        assert call.function is not None and call.function.name == "get_weather"
        assert json.loads(call.function.arguments or "") == {"city": "Paris"}
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
        cid = stream.response.headers["x-relaychat-conversation-id"]

        # The SDK way: the whole history again, with the tool's result.
        answer = await openai.chat.completions.create(
            model="fake/fake-model",
            messages=[
                question,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call.id or "",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call.id or "", "content": "22 C, clear"},
            ],
            tools=[WEATHER],
            extra_body={"conversation_id": cid},
        )
    assert answer.choices[0].message.content == "Sunny in Paris."
    assert answer.choices[0].message.tool_calls is None
    upstream = replies_asked(fake_llm, marker)[-1]
    assert [m["role"] for m in upstream["messages"]] == ["user", "assistant", "tool"]
    assert upstream["messages"][1]["tool_calls"][0]["id"] == call.id
    assert upstream["messages"][2] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "22 C, clear",
    }
    assert upstream["tools"][0]["function"]["name"] == "get_weather"
    stored = await messages_of(client, owner, cid)
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[1]["content"] == [
        {"type": "tool_call", "id": call.id, "name": "get_weather", "arguments": {"city": "Paris"}}
    ]
    assert stored[2]["metadata"] == {"via": "openai-api"}


async def test_tools_pass_through_without_storing(client: httpx.AsyncClient, live_url: str) -> None:
    owner = await make_user(client)
    async with sdk(live_url, owner.access_token) as openai:
        completion = await openai.chat.completions.create(
            model="fake/fake-model",
            messages=[
                {
                    "role": "user",
                    "content": script(calls(("get_weather", {"city": "Oslo"}))) + "\nOslo?",
                }
            ],
            tools=[WEATHER],
            store=False,
        )
    [call] = completion.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert completion.choices[0].finish_reason == "tool_calls"
    assert (await client.get("/api/convos", headers=owner.headers)).json()["conversations"] == []


@pytest.mark.parametrize(
    ("model", "upstream_choice"),
    [
        ("fake/fake-model", {"type": "function", "function": {"name": "get_weather"}}),
        ("anthropic/fake-model", {"type": "tool", "name": "get_weather"}),
    ],
    ids=["openai", "anthropic"],
)
@pytest.mark.parametrize("store", [True, False], ids=["stored", "unstored"])
async def test_a_named_tool_choice_reaches_the_upstream(
    client: httpx.AsyncClient,
    live_url: str,
    fake_llm: FakeLLM,
    model: str,
    upstream_choice: dict[str, Any],
    store: bool,
) -> None:
    """`tool_choice` naming a function is passed on in the upstream's own words."""
    owner = await make_user(client)
    marker = str(uuid.uuid4())
    async with sdk(live_url, owner.access_token) as openai:
        completion = await openai.chat.completions.create(
            model=model,
            messages=[
                {
                    "role": "user",
                    "content": script(calls(("get_weather", {"city": "Rome"})))
                    + f"\nRome? {marker}",
                }
            ],
            tools=[WEATHER, OTHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            store=store,
        )
    [call] = completion.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert replies_asked(fake_llm, marker)[0]["tool_choice"] == upstream_choice


async def test_a_tool_choice_naming_no_offered_tool_is_a_bad_request(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM
) -> None:
    owner = await make_user(client)
    before = len(fake_llm.requests)
    hello: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
    async with sdk(live_url, owner.access_token) as openai:
        with pytest.raises(BadRequestError) as other_name:
            await openai.chat.completions.create(
                model="fake/fake-model",
                messages=hello,
                tools=[WEATHER],
                tool_choice={"type": "function", "function": {"name": "get_time"}},
            )
        with pytest.raises(BadRequestError) as no_tools:
            await openai.chat.completions.create(
                model="fake/fake-model",
                messages=hello,
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
            )
        with pytest.raises(BadRequestError) as other_shape:
            await openai.chat.completions.create(
                model="fake/fake-model",
                messages=hello,
                tools=[WEATHER],
                extra_body={"tool_choice": {"type": "allowed_tools"}},
            )
    for raised in (other_name, no_tools, other_shape):
        assert raised.value.param is not None and raised.value.param.startswith("tool_choice")
    assert len(fake_llm.requests) == before
    assert (await client.get("/api/convos", headers=owner.headers)).json()["conversations"] == []
