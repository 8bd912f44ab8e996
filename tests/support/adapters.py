"""LLM adapter helpers: one-message requests carrying a marker, and the requests the fake
upstream received with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from relaychat.devtools.fake_llm import FakeLLM, RecordedRequest
from relaychat.llm.base import BaseAdapter, RetryPolicy, Timeouts
from relaychat.llm.types import ChatMessage, ChatRequest

# Small enough to keep failure tests quick, large enough for a loaded CI machine.
FAST_RETRY = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05)


TIMEOUTS = Timeouts(connect=5.0, first_token=5.0, idle=5.0)


SHORT_TIMEOUTS = Timeouts(connect=5.0, first_token=0.3, idle=0.3)


def sent(fake: FakeLLM, marker: str) -> list[RecordedRequest]:
    """Requests the fake received that carry `marker`."""
    return [r for r in fake.requests if marker in json.dumps(r.body)]


def ask(
    text: str, marker: str, directive: dict[str, Any] | None = None, **fields: Any
) -> ChatRequest:
    """A one-message request; `directive` becomes the `!fake` line."""
    prefix = f"!fake {json.dumps(directive)}\n" if directive else ""
    return ChatRequest(
        model="fake-model",
        messages=[ChatMessage(role="user", content=f"{prefix}{text} [{marker}]")],
        **fields,
    )


AdapterMaker = Callable[..., BaseAdapter]
