"""The official `openai` SDK pointed at a live relaychat server's /v1."""

from __future__ import annotations

from typing import Any

from openai import AsyncOpenAI

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.domain.messaging.titles import TITLE_PROMPT


def sdk(live_url: str, api_key: str) -> AsyncOpenAI:
    """A client that never retries, so each call is one request the test can count on."""
    return AsyncOpenAI(base_url=f"{live_url}/v1", api_key=api_key, max_retries=0)


def replies_asked(fake: FakeLLM, marker: str) -> list[dict[str, Any]]:
    """The upstream requests for replies that mention `marker`, in order. A conversation's
    title is asked for after its first reply ends, at a moment of its own, and mentions
    the first message too: those requests are left out."""
    return [
        r.body
        for r in fake.requests
        if marker in str(r.body) and TITLE_PROMPT not in str((r.body or {}).get("messages", [])[:1])
    ]
