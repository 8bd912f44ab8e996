"""A small SSE reader over httpx streaming responses, for tests that hold an event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class ServerEvent:
    id: str | None
    event: str
    data: dict[str, Any]


async def events(response: httpx.Response) -> AsyncIterator[ServerEvent]:
    """The events of an open SSE response (comments and retry hints skipped)."""
    event_id: str | None = None
    name = "message"
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield ServerEvent(event_id, name, json.loads("\n".join(data)))
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            name = value
        elif field == "data":
            data.append(value)


async def collect_until(
    response: httpx.Response,
    done: Callable[[ServerEvent], bool],
    *,
    guard_seconds: float = 30.0,
) -> list[ServerEvent]:
    """Events up to and including the first for which `done` is true.

    The guard only turns a hang into a failure; it is not a timing assertion.
    """
    seen: list[ServerEvent] = []

    async def read() -> None:
        async for event in events(response):
            seen.append(event)
            if done(event):
                return

    await asyncio.wait_for(read(), guard_seconds)
    return seen
