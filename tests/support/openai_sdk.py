"""The official `openai` SDK pointed at a live relaychat server's /v1."""

from __future__ import annotations

from openai import AsyncOpenAI


def sdk(live_url: str, api_key: str) -> AsyncOpenAI:
    """A client that never retries, so each call is one request the test can count on."""
    return AsyncOpenAI(base_url=f"{live_url}/v1", api_key=api_key, max_retries=0)
