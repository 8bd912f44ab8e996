"""The Gemini request body built by the adapter is the one the SDK would send."""

from __future__ import annotations

import base64
from typing import Any

from relaychat.llm.adapters.google_genai import to_gemini_body
from relaychat.llm.types import (
    ChatMessage,
    ChatRequest,
    ImageUrlPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
)

PNG = base64.b64encode(b"\x89PNG fake bytes").decode()
SIGNATURE = base64.b64encode(b"opaque signature").decode()
PARIS = {"city": "Paris"}
SUNNY = {"result": "sunny"}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def sdk_body(model: str, contents: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """What google-genai puts on the wire for these `Content` and config dicts."""
    from google import genai
    from google.genai import _common, types
    from google.genai.models import _GenerateContentParameters_to_mldev

    api = genai.Client(api_key="unused").aio._api_client
    parameters = types._GenerateContentParameters(
        model=model,
        contents=[types.Content.model_validate(c) for c in contents],
        config=types.GenerateContentConfig.model_validate(config),
    )
    body = _GenerateContentParameters_to_mldev(api, parameters, None, parameters)
    body.pop("_url", None)
    body.pop("config", None)
    result: dict[str, Any] = _common.encode_unserializable_types(_common.convert_to_dict(body))
    return result


def test_a_full_request_matches_the_sdks_body() -> None:
    request = ChatRequest(
        model="gemini-test",
        system="Be brief.",
        temperature=0.5,
        top_p=0.9,
        max_tokens=100,
        stop=["END"],
        tools=[ToolSpec(name="weather", description="Weather", parameters=SCHEMA)],
        tool_choice="required",
        messages=[
            ChatMessage(
                role="user",
                content=[
                    TextPart(text="What is here?"),
                    ImageUrlPart(image_url={"url": f"data:image/png;base64,{PNG}"}),
                    ImageUrlPart(image_url={"url": "https://ex.org/a.png"}),
                ],
            ),
            ChatMessage(role="user", content="and the weather?"),  # merged into one turn
            ChatMessage(
                role="assistant",
                content=[
                    TextPart(text="Looking."),
                    ToolCallPart(
                        id="call-1",
                        name="weather",
                        arguments=PARIS,
                        signature=SIGNATURE,
                    ),
                    ToolCallPart(id="gemini_call_7", name="weather", arguments={"city": "Rome"}),
                ],
            ),
            ChatMessage(
                role="tool",
                content=[
                    ToolResultPart(tool_call_id="call-1", content="sunny"),
                    ToolResultPart(tool_call_id="gemini_call_7", content="down", is_error=True),
                ],
            ),
            ChatMessage(role="assistant", content=[TextPart(text="")]),  # no parts: left out
        ],
    )
    contents: list[dict[str, Any]] = [
        {
            "role": "user",
            "parts": [
                {"text": "What is here?"},
                {"inline_data": {"mime_type": "image/png", "data": base64.b64decode(PNG)}},
                {"file_data": {"file_uri": "https://ex.org/a.png", "mime_type": "image/png"}},
                {"text": "and the weather?"},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Looking."},
                {
                    "function_call": {"id": "call-1", "name": "weather", "args": PARIS},
                    "thought_signature": base64.b64decode(SIGNATURE),
                },
                {"function_call": {"name": "weather", "args": {"city": "Rome"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"function_response": {"id": "call-1", "name": "weather", "response": SUNNY}},
                {"function_response": {"name": "weather", "response": {"error": "down"}}},
            ],
        },
    ]
    config = {
        "system_instruction": "Be brief.",
        "temperature": 0.5,
        "top_p": 0.9,
        "max_output_tokens": 100,
        "stop_sequences": ["END"],
        "tools": [
            {
                "function_declarations": [
                    {
                        "name": "weather",
                        "description": "Weather",
                        "parameters_json_schema": SCHEMA,
                    }
                ]
            }
        ],
        "tool_config": {"function_calling_config": {"mode": "ANY"}},
    }
    assert to_gemini_body(request) == sdk_body(request.model, contents, config)


def test_a_bare_request_matches_the_sdks_body() -> None:
    request = ChatRequest(model="gemini-test", messages=[ChatMessage(role="user", content="hi")])
    expected = sdk_body(request.model, [{"role": "user", "parts": [{"text": "hi"}]}], {})
    assert to_gemini_body(request) == expected
