"""A model provider that a test holds mid-reply and lets finish when it chooses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from relaychat.llm.config import load_config
from relaychat.llm.registry import EndpointRegistry
from relaychat.llm.types import ChatRequest, Finish, StreamEvent, TextDelta


class GatedProvider:
    """Streams `before`, sets `started`, waits for `release`, then streams `after` and ends."""

    endpoint = "gated"

    def __init__(self, before: str = "", after: str = "") -> None:
        self.before = before
        self.after = after
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        if self.before:
            yield TextDelta(text=self.before)
        # Set once the caller asked for more: `before` has been consumed by then.
        self.started.set()
        await self.release.wait()
        if self.after:
            yield TextDelta(text=self.after)
        yield Finish(reason="stop")

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def list_models(self) -> list[str]:
        return ["fake-model"]

    async def aclose(self) -> None:
        return None

    # What the generation runner needs of the endpoint registry.
    def provider(self, endpoint: str) -> GatedProvider:
        return self

    def default_model(self, endpoint: str) -> str | None:
        return "fake-model"

    def title_model(self, endpoint: str) -> str | None:
        return None

    def names(self) -> list[str]:
        return [self.endpoint]


def gated_registry(config_path: Path, gate: GatedProvider) -> EndpointRegistry:
    """The endpoints of `config_path`, every one of them answered by `gate`."""
    return EndpointRegistry.from_config(load_config(config_path), adapter_factory=lambda _: gate)
