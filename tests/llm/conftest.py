"""Fixtures: adapters pointed at the session's fake upstream (`fake`, in tests/conftest.py)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import httpx2
import pytest

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.llm.adapters.anthropic_messages import AnthropicAdapter
from relaychat.llm.adapters.google_genai import GoogleAdapter
from relaychat.llm.adapters.openai_chat import OpenAIAdapter
from relaychat.llm.base import AdapterOptions, BaseAdapter, RetryPolicy, Timeouts
from tests.support.adapters import FAST_RETRY, TIMEOUTS, AdapterMaker

_markers = itertools.count()


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    """A client that ignores proxy settings, so loopback stays loopback."""
    async with httpx2.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def marker() -> str:
    """A string unique to this test, to put in prompts and find its requests again."""
    return f"m{next(_markers)}x"


@pytest.fixture(params=["openai", "anthropic", "google"])
def provider(request: pytest.FixtureRequest) -> str:
    """Each wire format in turn."""
    name: str = request.param
    return name


@pytest.fixture
async def make_adapter(
    fake: FakeLLM, http: httpx2.AsyncClient, provider: str
) -> AsyncIterator[AdapterMaker]:
    """Build adapters of the current provider against the fake; closed after the test.

    The OpenAI and Anthropic ones on the HTTP client they make for themselves, as in the
    server (the SDK's, on aiohttp); the Google one on `http` (its own aiohttp session
    warns, which fails a test).
    """
    made: list[BaseAdapter] = []

    def build(
        timeouts: Timeouts = TIMEOUTS,
        retry: RetryPolicy = FAST_RETRY,
        api_key: str = "test-key",
        base_url: str | None = None,
    ) -> BaseAdapter:
        options = AdapterOptions(
            endpoint=f"fake-{provider}",
            api_key=api_key,
            base_url=base_url or (fake.openai_base_url if provider == "openai" else fake.url),
            timeouts=timeouts,
            retry=retry,
        )
        adapter: BaseAdapter
        if provider == "openai":
            adapter = OpenAIAdapter(options)
        elif provider == "anthropic":
            adapter = AnthropicAdapter(options)
        else:
            adapter = GoogleAdapter(options, http_client=http)
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        await adapter.aclose()
