"""The fake upstream's wire formats, read raw, and its non-streaming answers through the SDKs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from relaychat.devtools.fake_config import DEFAULT_REPLY, tokenize
from relaychat.devtools.fake_llm import FakeLLM, running_fake_llm

OPENAI_HEADERS = {"authorization": "Bearer k"}
ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


@pytest.fixture
async def raw() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        yield client


async def sse(client: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str]) -> list[str]:
    """The raw SSE frames of a streamed response, as text."""
    async with client.stream("POST", url, json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = (await response.aread()).decode()
    return [frame for frame in text.split("\n\n") if frame]


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}


async def test_openai_stream_is_chunks_then_usage_then_done(
    fake: FakeLLM, raw: httpx.AsyncClient
) -> None:
    body = chat("hi", stream=True, stream_options={"include_usage": True})
    frames = await sse(raw, f"{fake.url}/v1/chat/completions", body, OPENAI_HEADERS)

    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert content == tokenize(DEFAULT_REPLY)
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == len(content)
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_openai_stream_without_usage_option_has_no_usage(
    fake: FakeLLM, raw: httpx.AsyncClient
) -> None:
    frames = await sse(
        raw, f"{fake.url}/v1/chat/completions", chat("hi", stream=True), OPENAI_HEADERS
    )

    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_anthropic_stream_has_every_event_in_order(
    fake: FakeLLM, raw: httpx.AsyncClient
) -> None:
    body = chat("hi", stream=True, max_tokens=100)
    frames = await sse(raw, f"{fake.url}/v1/messages", body, ANTHROPIC_HEADERS)

    events = []
    for frame in frames:
        name_line, data_line = frame.split("\n")
        name = name_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append(data)
    kinds = [e["type"] for e in events]
    n = len(tokenize(DEFAULT_REPLY))
    assert kinds == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * n,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["usage"]["input_tokens"] == 1
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    assert events[-2]["usage"]["output_tokens"] == n


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/v1/chat/completions", {}), ("/v1/messages", {"anthropic-version": "2023-06-01"})],
)
async def test_a_request_without_a_key_gets_401(
    fake: FakeLLM, raw: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    response = await raw.post(f"{fake.url}{path}", json=chat("hi", max_tokens=5), headers=headers)

    assert response.status_code == 401
    assert "error" in response.json()


async def test_anthropic_requires_max_tokens(fake: FakeLLM, raw: httpx.AsyncClient) -> None:
    response = await raw.post(f"{fake.url}/v1/messages", json=chat("hi"), headers=ANTHROPIC_HEADERS)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_a_bad_directive_is_a_400_naming_the_field(
    fake: FakeLLM, raw: httpx.AsyncClient
) -> None:
    body = chat('!fake {"fial": "cut"}\nhi')
    response = await raw.post(f"{fake.url}/v1/chat/completions", json=body, headers=OPENAI_HEADERS)

    assert response.status_code == 400
    assert "fial" in response.json()["error"]["message"]


async def test_rate_limit_carries_retry_after_headers(
    fake: FakeLLM, raw: httpx.AsyncClient
) -> None:
    body = chat('!fake {"fail": "rate_limit", "retry_after_ms": 1500}\nhi')
    response = await raw.post(f"{fake.url}/v1/chat/completions", json=body, headers=OPENAI_HEADERS)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "1500"


async def test_fail_times_counts_identical_requests_per_server(raw: httpx.AsyncClient) -> None:
    body = chat('!fake {"fail": "server_error", "fail_times": 2}\nhi')
    async with running_fake_llm() as one, running_fake_llm() as two:
        statuses = [
            (
                await raw.post(
                    f"{server.url}/v1/chat/completions", json=body, headers=OPENAI_HEADERS
                )
            ).status_code
            for server in (one, two, one, two, one)
        ]
    assert statuses == [500, 500, 500, 500, 200]


async def test_models_list_in_each_format(fake: FakeLLM, raw: httpx.AsyncClient) -> None:
    openai_list = (await raw.get(f"{fake.url}/v1/models", headers=OPENAI_HEADERS)).json()
    anthropic_list = (await raw.get(f"{fake.url}/v1/models", headers=ANTHROPIC_HEADERS)).json()

    assert openai_list["object"] == "list"
    assert [m["id"] for m in openai_list["data"]] == ["fake-model", "fake-model-mini"]
    assert anthropic_list["has_more"] is False
    assert [m["type"] for m in anthropic_list["data"]] == ["model", "model"]


async def test_non_streaming_answers_parse_in_the_sdks(fake: FakeLLM) -> None:
    script = {
        "script": [{"text": "Checking.", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]}]
    }
    prompt = f"!fake {json.dumps(script)}\nhi"
    async with httpx2.AsyncClient(trust_env=False) as http:
        oa = openai.AsyncOpenAI(
            api_key="k", base_url=fake.openai_base_url, http_client=http, max_retries=0
        )
        plain = await oa.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}]
        )
        tools = await oa.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": prompt}]
        )
        an = anthropic.AsyncAnthropic(
            api_key="k", base_url=fake.url, http_client=http, max_retries=0
        )
        message = await an.messages.create(
            model="fake-model", max_tokens=3, messages=[{"role": "user", "content": "hi"}]
        )
        tool_message = await an.messages.create(
            model="fake-model", max_tokens=100, messages=[{"role": "user", "content": prompt}]
        )

    assert plain.choices[0].message.content == DEFAULT_REPLY
    assert plain.choices[0].finish_reason == "stop"
    assert plain.usage is not None
    assert tools.choices[0].finish_reason == "tool_calls"
    call = tools.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.function.name, call.function.arguments) == ("f", '{"a":1}')  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == "".join(tokenize(DEFAULT_REPLY)[:3])  # type: ignore[union-attr]
    assert tool_message.stop_reason == "tool_use"
    assert tool_message.content[1].input == {"a": 1}  # type: ignore[union-attr]


async def test_non_streaming_failures(fake: FakeLLM, raw: httpx.AsyncClient) -> None:
    url = f"{fake.url}/v1/chat/completions"
    garbage = await raw.post(
        url, json=chat('!fake {"fail": "garbage"}\nhi'), headers=OPENAI_HEADERS
    )
    error = await raw.post(
        url, json=chat('!fake {"fail": "error_event"}\nhi'), headers=OPENAI_HEADERS
    )
    with pytest.raises(httpx.RemoteProtocolError):
        await raw.post(url, json=chat('!fake {"fail": "cut"}\nhi'), headers=OPENAI_HEADERS)

    assert garbage.status_code == 200
    with pytest.raises(ValueError):
        garbage.json()
    assert error.status_code == 500


async def test_azure_deployment_path(fake: FakeLLM) -> None:
    async with httpx2.AsyncClient(trust_env=False) as http:
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=fake.url,
            api_version="2024-10-21",
            api_key="k",
            http_client=http,
            max_retries=0,
        )
        reply = await client.chat.completions.create(
            model="my-deployment", messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.model == "my-deployment"
    assert fake.requests[-1].path == "/openai/deployments/my-deployment/chat/completions"
    assert fake.requests[-1].headers["api-key"] == "k"
