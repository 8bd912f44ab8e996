"""What each adapter puts on the wire, and tool calls round-tripped through each format."""

from __future__ import annotations

from typing import Any

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.llm.adapters.google_genai import SYNTHETIC_ID_PREFIX
from relaychat.llm.types import (
    ChatMessage,
    ChatRequest,
    Finish,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallPart,
    ToolNamed,
    ToolResultPart,
    ToolSpec,
    collect,
)
from tests.support.adapters import AdapterMaker, ask, sent

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)
PARIS = {"city": "Paris", "days": 3}
ZURICH = {"city": 'Zürich "quoted"', "days": 1}
SCRIPT = [
    {
        "text": "Let me look.",
        "tool_calls": [
            {"name": "get_weather", "arguments": PARIS},
            {"name": "get_weather", "arguments": ZURICH},
        ],
    },
    "Sunny in both.",
]


async def test_streaming_request_shape(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str, provider: str
) -> None:
    request = ask("hi", marker, max_tokens=50, temperature=0.5, system="Be brief.")
    await collect(make_adapter().stream(request))

    (recorded,) = sent(fake, marker)
    body = recorded.body
    if provider == "openai":
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert body["max_tokens"] == 50
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    elif provider == "anthropic":
        assert body["stream"] is True
        assert body["max_tokens"] == 50
        assert body["system"] == "Be brief."
    else:
        assert recorded.path == "/v1/models/fake-model:streamGenerateContent"
        assert body["generationConfig"]["maxOutputTokens"] == 50
        assert body["generationConfig"]["temperature"] == 0.5
        assert body["systemInstruction"]["parts"] == [{"text": "Be brief."}]


async def test_the_key_goes_in_each_providers_header(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str, provider: str
) -> None:
    # The OpenAI adapter posts through the client's `post`, not `create`: its key must
    # still go the SDK's way, and nothing else may carry it.
    await collect(make_adapter(api_key="sk-secret-42").stream(ask("hi", marker)))

    (recorded,) = sent(fake, marker)
    headers = {name.lower(): value for name, value in recorded.headers.items()}
    carrying = [name for name, value in headers.items() if "sk-secret-42" in value]
    # Which header the Anthropic and Google SDKs use is theirs to choose; one, once.
    assert len(carrying) == 1, headers
    if provider == "openai":
        assert headers["authorization"] == "Bearer sk-secret-42"
    assert headers["content-type"].startswith("application/json")
    if provider != "google":  # the SDKs' own header, derived from the read timeout
        assert "x-stainless-read-timeout" in headers


async def test_tool_calls_are_assembled(
    make_adapter: AdapterMaker, marker: str, provider: str
) -> None:
    request = ask("weather?", marker, {"script": SCRIPT, "arg_chunk_chars": 4}, tools=[WEATHER])
    events = [e async for e in make_adapter().stream(request)]

    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.index, c.name, c.arguments) for c in calls] == [
        (0, "get_weather", PARIS),
        (1, "get_weather", ZURICH),
    ]
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    for call in calls:
        joined = "".join(f.arguments_delta for f in fragments if f.index == call.index)
        assert joined == call.raw_arguments
    if provider == "google":
        # Gemini sends each call whole, without an id but with a signature.
        assert len(fragments) == 2
        assert all(c.id.startswith(SYNTHETIC_ID_PREFIX) for c in calls)
        assert all(c.signature for c in calls)
    else:
        assert len(fragments) > 10, "arguments arrive in many small fragments"
        prefix = "call" if provider == "openai" else "toolu"
        assert [c.id for c in calls] == [f"{prefix}_fake_0_0", f"{prefix}_fake_0_1"]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me look."
    assert isinstance(events[-1], Finish)
    assert events[-1].reason == "tool_calls"


async def test_tool_loop_sends_results_back_and_gets_the_next_turn(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str, provider: str
) -> None:
    adapter = make_adapter()
    first = ask("weather?", marker, {"script": SCRIPT}, tools=[WEATHER])
    turn = await collect(adapter.stream(first))
    assert turn.finish_reason == "tool_calls"

    calls = [
        ToolCallPart(id=c.id, name=c.name, arguments=c.arguments or {}, signature=c.signature)
        for c in turn.tool_calls
    ]
    results = [
        ToolResultPart(tool_call_id=c.id, content=f"sunny #{c.index}") for c in turn.tool_calls
    ]
    history = [
        *first.messages,
        ChatMessage(role="assistant", content=[{"type": "text", "text": turn.text}, *calls]),
        ChatMessage(role="tool", content=results),
    ]
    final = await collect(adapter.stream(first.model_copy(update={"messages": history})))

    assert final.text == "Sunny in both."
    assert final.finish_reason == "stop"
    check = {"openai": _openai_history, "anthropic": _anthropic_history, "google": _google_history}
    check[provider](sent(fake, marker)[-1].body)


def _openai_history(body: dict[str, Any]) -> None:
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "tool"]
    assistant = body["messages"][1]
    assert assistant["content"] == "Let me look."
    assert assistant["tool_calls"][0]["id"] == "call_fake_0_0"
    assert assistant["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris", "days": 3}',
    }
    assert body["messages"][2] == {
        "role": "tool",
        "tool_call_id": "call_fake_0_0",
        "content": "sunny #0",
    }
    assert body["tools"][0]["function"]["parameters"] == WEATHER.parameters


def _anthropic_history(body: dict[str, Any]) -> None:
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assistant = body["messages"][1]["content"]
    assert assistant[0] == {"type": "text", "text": "Let me look."}
    assert assistant[1] == {
        "type": "tool_use",
        "id": "toolu_fake_0_0",
        "name": "get_weather",
        "input": PARIS,
    }
    results = body["messages"][2]["content"]
    assert [(r["type"], r["tool_use_id"]) for r in results] == [
        ("tool_result", "toolu_fake_0_0"),
        ("tool_result", "toolu_fake_0_1"),
    ]
    assert body["tools"][0]["input_schema"] == WEATHER.parameters


def _google_history(body: dict[str, Any]) -> None:
    contents = body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    model_parts = contents[1]["parts"]
    assert model_parts[0] == {"text": "Let me look."}
    assert model_parts[1]["functionCall"] == {"name": "get_weather", "args": PARIS}
    assert model_parts[1]["thoughtSignature"], "the signature goes back with the call"
    responses = [p["functionResponse"] for p in contents[2]["parts"]]
    assert responses[0] == {"name": "get_weather", "response": {"result": "sunny #0"}}
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert _field(declaration, "parametersJsonSchema") == WEATHER.parameters


def _field(obj: dict[str, Any], name: str) -> Any:
    """A field under its JSON name or its proto name; Google's API takes both, the SDK mixes."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return obj[name] if name in obj else obj[snake]


async def test_tool_choice_is_translated(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str, provider: str
) -> None:
    await collect(make_adapter().stream(ask("hi", marker, tools=[WEATHER], tool_choice="required")))

    body = sent(fake, marker)[0].body
    if provider == "openai":
        assert body["tool_choice"] == "required"
    elif provider == "anthropic":
        assert body["tool_choice"] == {"type": "any"}
    else:
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


async def test_a_named_tool_choice_is_translated(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str, provider: str
) -> None:
    named = ToolNamed(name="get_weather")
    await collect(make_adapter().stream(ask("hi", marker, tools=[WEATHER], tool_choice=named)))

    body = sent(fake, marker)[0].body
    if provider == "openai":
        assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    elif provider == "anthropic":
        assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    else:
        config = body["toolConfig"]["functionCallingConfig"]
        assert config["mode"] == "ANY"
        assert _field(config, "allowedFunctionNames") == ["get_weather"]


async def test_image_parts_reach_the_upstream(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str, provider: str
) -> None:
    image: dict[str, Any] = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    request = ChatRequest(
        model="fake-model",
        messages=[
            ChatMessage(role="user", content=[{"type": "text", "text": f"what? [{marker}]"}, image])
        ],
    )
    await collect(make_adapter().stream(request))

    body = sent(fake, marker)[0].body
    if provider == "openai":
        part = body["messages"][0]["content"][1]
        assert part == {"type": "image_url", "image_url": {"url": image["image_url"]["url"]}}
    elif provider == "anthropic":
        part = body["messages"][0]["content"][1]
        assert part["source"] == {
            "type": "base64",
            "media_type": "image/png",
            "data": "iVBORw0KGgo=",
        }
    else:
        blob = body["contents"][0]["parts"][1]["inlineData"]
        assert (_field(blob, "mimeType"), blob["data"]) == ("image/png", "iVBORw0KGgo=")
