"""Token usage through each adapter and its official SDK, over real HTTP to the fake upstream:
reported in each provider's wire format, and absent when the upstream counts nothing."""

from __future__ import annotations

import json

import httpx2
import pytest
from google import genai
from google.genai import types as genai_types

from relaychat.devtools.fake_config import DEFAULT_REPLY, tokenize
from relaychat.devtools.fake_llm import FakeLLM
from relaychat.llm.types import Usage, collect
from tests.support.adapters import AdapterMaker, ask, sent

NO_USAGE = {"usage": False}


async def test_usage_comes_from_the_providers_counts(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    completion = await collect(make_adapter().stream(ask("count me", marker)))

    [request] = sent(fake, marker)
    prompt_words = len(tokenize(f"count me [{marker}]"))
    assert completion.usage == Usage(
        prompt_tokens=prompt_words, completion_tokens=len(tokenize(DEFAULT_REPLY))
    )
    if request.path.endswith("/chat/completions"):
        # Streamed chat completions carry usage only when asked for.
        assert request.body["stream_options"] == {"include_usage": True}


async def test_an_upstream_that_counts_nothing_gives_no_counts(
    make_adapter: AdapterMaker, provider: str, marker: str
) -> None:
    completion = await collect(make_adapter().stream(ask("count me", marker, NO_USAGE)))

    assert completion.text == DEFAULT_REPLY
    if provider == "anthropic":  # its format has no message without usage: zeros
        assert completion.usage == Usage(prompt_tokens=0, completion_tokens=0)
    else:
        assert completion.usage is None


async def test_usage_counts_tool_call_turns(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    script = {"script": [{"tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}]}]}
    completion = await collect(make_adapter().stream(ask("go", marker, script)))

    assert completion.finish_reason == "tool_calls"
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert completion.usage.prompt_tokens > 0


# -- the fake's non-streamed answers, read by the official SDKs ------------------------------


@pytest.mark.parametrize("counts", [True, False], ids=["usage", "no-usage"])
async def test_non_streamed_usage_in_each_sdk(fake: FakeLLM, counts: bool) -> None:
    import anthropic
    import openai

    directive = "" if counts else f"!fake {json.dumps(NO_USAGE)}\n"
    prompt = f"{directive}one two three"
    words = len(tokenize(DEFAULT_REPLY))
    async with httpx2.AsyncClient(trust_env=False) as http:
        oa = openai.AsyncOpenAI(
            api_key="k", base_url=fake.openai_base_url, http_client=http, max_retries=0
        )
        chat = await oa.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": prompt}]
        )
        an = anthropic.AsyncAnthropic(
            api_key="k", base_url=fake.url, http_client=http, max_retries=0
        )
        message = await an.messages.create(
            model="fake-model", max_tokens=100, messages=[{"role": "user", "content": prompt}]
        )
        google = genai.Client(
            api_key="k",
            http_options=genai_types.HttpOptions(base_url=fake.url, httpx_async_client=http),
        )
        gemini = await google.aio.models.generate_content(model="fake-model", contents=prompt)

    if counts:
        assert chat.usage is not None
        assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (3, words)
        assert chat.usage.total_tokens == 3 + words
        assert (message.usage.input_tokens, message.usage.output_tokens) == (3, words)
        assert gemini.usage_metadata is not None
        assert gemini.usage_metadata.prompt_token_count == 3
        assert gemini.usage_metadata.candidates_token_count == words
    else:
        assert chat.usage is None
        assert (message.usage.input_tokens, message.usage.output_tokens) == (0, 0)
        assert gemini.usage_metadata is None
