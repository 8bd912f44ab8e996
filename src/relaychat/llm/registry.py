"""The endpoint registry: one adapter per configured endpoint, and the models each offers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from relaychat.llm.base import AdapterOptions, ChatProvider, RetryPolicy, Timeouts
from relaychat.llm.config import EndpointSpec, LLMConfig, ProviderKind, load_config
from relaychat.llm.errors import (
    EndpointNotFound,
    ProviderError,
    ProviderNotImplemented,
    ProviderSdkMissing,
)

if TYPE_CHECKING:
    import httpx2

logger = logging.getLogger(__name__)

AdapterFactory = Callable[[EndpointSpec], ChatProvider]


class EndpointInfo(BaseModel):
    """What clients may see of an endpoint: never its key or address."""

    name: str
    provider: ProviderKind
    models: list[str]
    default_model: str | None
    title_model: str | None
    available: bool = True


def adapter_options(spec: EndpointSpec) -> AdapterOptions:
    """The adapter's view of an endpoint's configuration."""
    cfg = spec.config
    return AdapterOptions(
        endpoint=spec.name,
        api_key=spec.api_key,
        base_url=spec.base_url,
        headers=dict(cfg.headers),
        timeouts=Timeouts(cfg.timeouts.connect, cfg.timeouts.first_token, cfg.timeouts.idle),
        retry=RetryPolicy(max_retries=cfg.max_retries),
        default_max_tokens=cfg.max_tokens or AdapterOptions.default_max_tokens,
    )


def build_adapter(
    spec: EndpointSpec, *, http_client: httpx2.AsyncClient | None = None
) -> ChatProvider:
    """The adapter for an endpoint; raises ProviderNotImplemented for unknown providers."""
    options = adapter_options(spec)
    if spec.provider == "anthropic":
        from relaychat.llm.adapters.anthropic_messages import AnthropicAdapter

        return AnthropicAdapter(options, http_client=http_client)
    if spec.provider == "azure_openai":
        from relaychat.llm.adapters.openai_chat import AzureOpenAIAdapter
        from relaychat.llm.config import AzureEndpointConfig

        assert isinstance(spec.config, AzureEndpointConfig)
        return AzureOpenAIAdapter(
            options, api_version=spec.config.api_version, http_client=http_client
        )
    if spec.provider in ("openai", "custom"):
        from relaychat.llm.adapters.openai_chat import MaxTokensParam, OpenAIAdapter

        # OpenAI itself wants the newer parameter; most compatible servers know only the old.
        param: MaxTokensParam = (
            "max_completion_tokens" if spec.provider == "openai" else "max_tokens"
        )
        return OpenAIAdapter(options, http_client=http_client, max_tokens_param=param)
    if spec.provider == "google":
        from relaychat.llm.adapters.google_genai import GoogleAdapter

        return GoogleAdapter(options, http_client=http_client)
    raise ProviderNotImplemented(
        f"Endpoint {spec.name!r}: {spec.provider} endpoints are not implemented yet",
        endpoint=spec.name,
    )


@dataclass
class _ModelCache:
    models: list[str] = field(default_factory=list)
    expires: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class EndpointRegistry:
    """Adapters for every endpoint, built up front; model lists fetched on demand and cached."""

    def __init__(
        self,
        specs: Sequence[EndpointSpec],
        *,
        http_client: httpx2.AsyncClient | None = None,
        adapter_factory: AdapterFactory | None = None,
        models_ttl: float = 600.0,
        failed_fetch_ttl: float = 60.0,
    ) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._models_ttl = models_ttl
        self._failed_fetch_ttl = failed_fetch_ttl
        self._caches = {spec.name: _ModelCache() for spec in specs}
        factory = adapter_factory or (lambda spec: build_adapter(spec, http_client=http_client))
        self._adapters: dict[str, ChatProvider] = {}
        self._unavailable: dict[str, ProviderNotImplemented | ProviderSdkMissing] = {}
        # Built now so that SDK imports happen at startup, not inside a request.
        for spec in specs:
            try:
                self._adapters[spec.name] = factory(spec)
            except (ProviderNotImplemented, ProviderSdkMissing) as exc:
                logger.warning("endpoint %s is unavailable: %s", spec.name, exc.detail)
                self._unavailable[spec.name] = exc

    @classmethod
    def from_config(
        cls,
        config: LLMConfig,
        *,
        http_client: httpx2.AsyncClient | None = None,
        adapter_factory: AdapterFactory | None = None,
    ) -> EndpointRegistry:
        """A registry of every endpoint in `config`."""
        return cls(
            config.endpoint_specs(), http_client=http_client, adapter_factory=adapter_factory
        )

    def names(self) -> list[str]:
        """Endpoint names in configuration order."""
        return list(self._specs)

    def spec(self, name: str) -> EndpointSpec:
        """The endpoint's resolved configuration; raises EndpointNotFound."""
        try:
            return self._specs[name]
        except KeyError:
            raise EndpointNotFound(f"No endpoint named {name!r}", endpoint=name) from None

    def provider(self, name: str) -> ChatProvider:
        """The adapter serving `name`; raises EndpointNotFound, or why it has no adapter."""
        self.spec(name)
        if name in self._unavailable:
            raise self._unavailable[name]
        return self._adapters[name]

    def default_model(self, name: str) -> str | None:
        """The first configured model, else the first fetched one, if any."""
        spec = self.spec(name)
        if spec.config.models.default:
            return spec.config.models.default[0]
        fetched = self._caches[name].models
        return fetched[0] if fetched else None

    def title_model(self, name: str) -> str | None:
        """The model configured to write conversation titles for this endpoint."""
        return self.spec(name).config.title_model

    async def models(self, name: str, *, refresh: bool = False) -> list[str]:
        """The endpoint's models: fetched when `fetch: true` (cached), else the defaults."""
        spec = self.spec(name)
        defaults = list(spec.config.models.default)
        if not spec.config.models.fetch or name in self._unavailable:
            return defaults
        cache = self._caches[name]
        async with cache.lock:
            if not refresh and time.monotonic() < cache.expires:
                return list(cache.models)
            try:
                fetched = await self._adapters[name].list_models()
            except ProviderError as exc:
                # Never log the exception's request: its headers hold the key.
                logger.warning("endpoint %s: listing models failed (%s)", name, exc.code)
                cache.models, ttl = defaults, self._failed_fetch_ttl
            else:
                cache.models, ttl = (fetched or defaults), self._models_ttl
            cache.expires = time.monotonic() + ttl
            return list(cache.models)

    async def list_endpoints(self) -> list[EndpointInfo]:
        """Every endpoint with its models, fetching those that ask for it concurrently."""
        names = self.names()
        lists = await asyncio.gather(*(self.models(name) for name in names))
        return [
            EndpointInfo(
                name=name,
                provider=self._specs[name].provider,
                models=models,
                default_model=self.default_model(name),
                title_model=self.title_model(name),
                available=name not in self._unavailable,
            )
            for name, models in zip(names, lists, strict=True)
        ]

    async def aclose(self) -> None:
        """Close every adapter's connections."""
        await asyncio.gather(*(adapter.aclose() for adapter in self._adapters.values()))


def load_registry(
    path: Path | str | None,
    env: Mapping[str, str] | None = None,
    *,
    http_client: httpx2.AsyncClient | None = None,
) -> EndpointRegistry:
    """Read relaychat.yaml (or the environment) and build the registry; raises ConfigError."""
    config = load_config(path, env)
    for skipped in config.skipped:
        logger.warning("%s", skipped)
    return EndpointRegistry.from_config(config, http_client=http_client)
