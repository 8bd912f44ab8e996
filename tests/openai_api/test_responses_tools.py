"""`tools` on /v1/responses for endpoint models: the caller's function tools go to the
model, its calls come back as `function_call` output items, and the caller's
`function_call_output` items (after `previous_response_id`, or in the whole input) get the
answer; streamed and whole."""

from __future__ import annotations

import json
import uuid

import httpx
import openai
import pytest
from openai.types.responses import FunctionToolParam, ResponseInputParam

from relaychat.devtools.fake_llm import FakeLLM
from tests.support.chat import calls, make_agent, messages_of, script
from tests.support.factories import make_key, make_user
from tests.support.openai_sdk import replies_asked, sdk

WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}


def _question(marker: str) -> str:
    return script(calls(("get_weather", {"city": "Paris"})), "Sunny in Paris.") + (
        f"\nWeather in Paris? {marker}"
    )


async def test_a_function_call_round_trip_with_previous_response_id(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    marker = str(uuid.uuid4())
    async with sdk(live_url, key.secret) as api:
        first = await api.responses.create(
            model="fake/fake-model", input=_question(marker), tools=[WEATHER]
        )
        [call] = first.output
        assert call.type == "function_call"
        assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
        assert first.output_text == "" and first.status == "completed"
        assert [tool.name for tool in first.tools if tool.type == "function"] == ["get_weather"]
        fetched = await api.responses.retrieve(first.id)
        assert [(i.type, getattr(i, "call_id", None)) for i in fetched.output] == [
            ("function_call", call.call_id)
        ]
        second = await api.responses.create(
            model="fake/fake-model",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22 C"}],
            tools=[WEATHER],
        )
    assert second.output_text == "Sunny in Paris."
    assert [item.type for item in second.output] == ["message"]
    upstream = replies_asked(fake_llm, marker)
    assert upstream[0]["tools"][0]["function"]["name"] == "get_weather"
    assert [m["role"] for m in upstream[-1]["messages"]] == ["user", "assistant", "tool"]
    assert upstream[-1]["messages"][1]["tool_calls"][0]["id"] == call.call_id
    assert upstream[-1]["messages"][2] == {
        "role": "tool",
        "tool_call_id": call.call_id,
        "content": "22 C",
    }
    [conversation] = (await client.get("/api/convos", headers=owner.headers)).json()[
        "conversations"
    ]
    cid = conversation["conversation_id"]
    stored = await messages_of(client, owner, cid)
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[2]["api_key_id"] == key.id


async def test_a_streamed_function_call_round_trip_with_the_whole_input(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM
) -> None:
    """Streamed: the call comes as its typed events; the caller sends the whole input back
    (no `previous_response_id`), as a stateless client does. A named `tool_choice` reaches
    the upstream."""
    owner = await make_user(client)
    marker = str(uuid.uuid4())
    async with sdk(live_url, owner.access_token) as api:
        stream = await api.responses.create(
            model="fake/fake-model",
            input=_question(marker),
            tools=[WEATHER],
            tool_choice={"type": "function", "name": "get_weather"},
            stream=True,
        )
        events = [event async for event in stream]
        assert [e.type for e in events] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert [e.sequence_number for e in events] == list(range(len(events)))
        done = events[-2]
        assert done.type == "response.output_item.done"
        call = done.item
        assert call.type == "function_call" and call.name == "get_weather"
        arguments = events[4]
        assert arguments.type == "response.function_call_arguments.done"
        assert json.loads(arguments.arguments) == {"city": "Paris"}
        completed = events[-1]
        assert completed.type == "response.completed"
        assert completed.response.tool_choice.type == "function"  # type: ignore[union-attr]
        whole: ResponseInputParam = [
            {"role": "user", "content": _question(marker)},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "22 C"},
        ]
        answer = await api.responses.create(
            model="fake/fake-model", input=whole, tools=[WEATHER], stream=True
        )
        text = "".join([e.delta async for e in answer if e.type == "response.output_text.delta"])
    assert text == "Sunny in Paris."
    upstream = replies_asked(fake_llm, marker)
    assert upstream[0]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert [m["role"] for m in upstream[-1]["messages"]] == ["user", "assistant", "tool"]
    assert upstream[-1]["messages"][2]["content"] == "22 C"


async def test_what_responses_tools_cannot_do_is_a_bad_request(
    client: httpx.AsyncClient, live_url: str
) -> None:
    owner = await make_user(client)
    agent = await make_agent(client, owner)
    async with sdk(live_url, owner.access_token) as api:
        with pytest.raises(openai.BadRequestError) as hosted:
            await api.responses.create(
                model="fake/fake-model", input="hi", tools=[{"type": "web_search"}]
            )
        with pytest.raises(openai.BadRequestError) as by_agent:
            await api.responses.create(model=agent["agent_id"], input="hi", tools=[WEATHER])
        with pytest.raises(openai.BadRequestError) as unknown_name:
            await api.responses.create(
                model="fake/fake-model",
                input="hi",
                tools=[WEATHER],
                tool_choice={"type": "function", "name": "get_time"},
            )
        with pytest.raises(openai.BadRequestError) as bad_arguments:
            await api.responses.create(
                model="fake/fake-model",
                input=[
                    {"role": "user", "content": "hi"},
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "[1]"},
                    {"type": "function_call_output", "call_id": "c1", "output": "x"},
                ],
            )
    assert hosted.value.param == "tools[0].type"
    assert hosted.value.code == "unsupported_parameter"
    assert by_agent.value.param == "tools"
    assert unknown_name.value.param == "tool_choice"
    assert bad_arguments.value.param == "input[1].arguments"
    assert (await client.get("/api/convos", headers=owner.headers)).json()["conversations"] == []
