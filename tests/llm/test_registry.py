"""The endpoint registry: adapters by name, model lists fetched or not, keys never shown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from relaychat.devtools.fake_llm import FakeLLM, running_fake_llm
from relaychat.llm.adapters.anthropic_messages import AnthropicAdapter
from relaychat.llm.adapters.google_genai import GoogleAdapter
from relaychat.llm.adapters.openai_chat import AzureOpenAIAdapter, OpenAIAdapter
from relaychat.llm.base import ChatProvider
from relaychat.llm.config import EndpointSpec, parse_config
from relaychat.llm.errors import EndpointNotFound, ProviderNotImplemented
from relaychat.llm.registry import EndpointRegistry, build_adapter, load_registry
from relaychat.llm.types import ChatMessage, ChatRequest, collect

RegistryMaker = Callable[[dict[str, Any]], EndpointRegistry]


@pytest.fixture
async def make_registry(http: httpx2.AsyncClient) -> AsyncIterator[RegistryMaker]:
    made: list[EndpointRegistry] = []

    def build(endpoints: dict[str, Any]) -> EndpointRegistry:
        config = parse_config({"endpoints": endpoints}, {})
        registry = EndpointRegistry.from_config(config, http_client=http)
        made.append(registry)
        return registry

    yield build
    for registry in made:
        await registry.aclose()


def model_requests(fake: FakeLLM) -> int:
    return sum(1 for r in fake.requests if r.path == "/v1/models")


def fake_endpoint(server: FakeLLM, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_url": server.openai_base_url, "api_key": "k", **extra}


async def test_adapters_by_name_and_provider(make_registry: RegistryMaker) -> None:
    registry = make_registry(
        {
            "openAI": {"api_key": "k"},
            "anthropic": {"api_key": "k"},
            "google": {"api_key": "k"},
            "azureOpenAI": {"api_key": "k", "base_url": "http://azure.local"},
            "custom": [{"name": "local", "base_url": "http://127.0.0.1:1/v1"}],
        }
    )

    assert registry.names() == ["openAI", "anthropic", "google", "azureOpenAI", "local"]
    assert isinstance(registry.provider("anthropic"), AnthropicAdapter)
    assert isinstance(registry.provider("google"), GoogleAdapter)
    assert isinstance(registry.provider("azureOpenAI"), AzureOpenAIAdapter)
    openai = registry.provider("openAI")
    local = registry.provider("local")
    assert isinstance(openai, OpenAIAdapter)
    assert isinstance(local, OpenAIAdapter)
    assert openai.max_tokens_param == "max_completion_tokens"
    assert local.max_tokens_param == "max_tokens"
    assert registry.provider("local") is local, "one adapter (and connection pool) per endpoint"
    with pytest.raises(EndpointNotFound):
        registry.provider("nope")


async def test_an_endpoint_without_adapter_is_listed_as_unavailable(
    make_registry: RegistryMaker,
) -> None:
    def only_openai(spec: EndpointSpec) -> ChatProvider:
        if spec.provider != "openai":
            raise ProviderNotImplemented(f"{spec.provider} is not supported")
        return build_adapter(spec)

    config = parse_config(
        {"endpoints": {"openAI": {"api_key": "k"}, "google": {"api_key": "k"}}}, {}
    )
    registry = EndpointRegistry.from_config(config, adapter_factory=only_openai)
    try:
        with pytest.raises(ProviderNotImplemented) as caught:
            registry.provider("google")
        assert caught.value.status == 501
        infos = await registry.list_endpoints()
        assert [(i.name, i.available) for i in infos] == [("openAI", True), ("google", False)]
    finally:
        await registry.aclose()


async def test_models_without_fetch_are_the_defaults(
    make_registry: RegistryMaker, fake: FakeLLM
) -> None:
    before = model_requests(fake)
    registry = make_registry(
        {"custom": [fake_endpoint(fake, "plain", models={"default": ["a", "b"]}, title_model="b")]}
    )

    assert await registry.models("plain") == ["a", "b"]
    assert registry.default_model("plain") == "a"
    assert registry.title_model("plain") == "b"
    assert model_requests(fake) == before


async def test_fetched_models_are_cached(make_registry: RegistryMaker, fake: FakeLLM) -> None:
    registry = make_registry(
        {"custom": [fake_endpoint(fake, "fetching", models={"default": ["x"], "fetch": True})]}
    )
    before = model_requests(fake)

    assert await registry.models("fetching") == ["fake-model", "fake-model-mini"]
    assert await registry.models("fetching") == ["fake-model", "fake-model-mini"]
    assert model_requests(fake) == before + 1
    await registry.models("fetching", refresh=True)
    assert model_requests(fake) == before + 2
    assert registry.default_model("fetching") == "x", "configured defaults come first"


async def test_default_model_falls_back_to_the_fetched_list(
    make_registry: RegistryMaker, fake: FakeLLM
) -> None:
    registry = make_registry({"custom": [fake_endpoint(fake, "f", models={"fetch": True})]})

    assert registry.default_model("f") is None
    await registry.models("f")
    assert registry.default_model("f") == "fake-model"


async def test_a_failed_fetch_falls_back_to_the_defaults(
    make_registry: RegistryMaker, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_fake_llm(api_key="the-real-key") as strict:
        endpoint = fake_endpoint(strict, "wrongkey", models={"default": ["d"], "fetch": True})
        endpoint["api_key"] = "sk-wrong-key-that-must-not-be-logged"
        registry = make_registry({"custom": [endpoint]})

        assert await registry.models("wrongkey") == ["d"]
        assert await registry.models("wrongkey") == ["d"]
        assert len(strict.requests) == 1, "the failure is cached for a while too"
    assert "provider_auth_failed" in caplog.text
    assert "sk-wrong-key" not in caplog.text


async def test_list_endpoints_never_shows_keys_or_addresses(
    make_registry: RegistryMaker, fake: FakeLLM
) -> None:
    registry = make_registry(
        {
            "anthropic": {"api_key": "sk-ant-secret", "models": {"default": ["c1"]}},
            "custom": [fake_endpoint(fake, "fake", models={"fetch": True}, title_model="t")],
        }
    )

    infos = await registry.list_endpoints()

    dumped = str([info.model_dump() for info in infos])
    assert "sk-ant-secret" not in dumped
    assert "127.0.0.1" not in dumped
    assert [(i.name, i.provider, i.models) for i in infos] == [
        ("anthropic", "anthropic", ["c1"]),
        ("fake", "custom", ["fake-model", "fake-model-mini"]),
    ]
    assert infos[1].title_model == "t"


async def test_load_registry_from_a_file_and_stream_through_it(
    tmp_path: Path, fake: FakeLLM, http: httpx2.AsyncClient, marker: str
) -> None:
    path = tmp_path / "relaychat.yaml"
    path.write_text(
        f"""
endpoints:
  anthropic:
    base_url: {fake.url}
    models: {{default: [fake-model]}}
  custom:
    - name: fake
      base_url: ${{FAKE_URL}}/v1
      api_key: ${{FAKE_KEY:-any}}
      models: {{default: [fake-model]}}
"""
    )
    registry = load_registry(
        path, {"ANTHROPIC_API_KEY": "k", "FAKE_URL": fake.url}, http_client=http
    )
    try:
        request = ChatRequest(
            model="fake-model",
            messages=[ChatMessage(role="user", content=f'!fake {{"echo": true}}\nping {marker}')],
        )
        for name in ("anthropic", "fake"):
            completion = await collect(registry.provider(name).stream(request))
            assert completion.text == f"ping {marker}"
    finally:
        await registry.aclose()
