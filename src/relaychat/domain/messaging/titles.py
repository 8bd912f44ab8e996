"""Conversation titles written by a model after the first exchange."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.domain.limits import storable_text
from relaychat.llm.types import ChatMessage, ChatRequest, collect

if TYPE_CHECKING:
    from relaychat.domain.answering.generations import Providers

MAX_TITLE_CHARS = 80
TITLE_PROMPT = (
    "Write a title of at most six words for the conversation below. "
    "Answer with the title only, without quotes or punctuation at the end."
)


async def generate_title(
    providers: Providers, endpoint: str, request: ChatRequest, reply: str
) -> str | None:
    """A short title for a conversation from its first message and reply."""
    model = providers.title_model(endpoint) or request.model
    first = request.messages[-1].text if request.messages else ""
    title_request = ChatRequest(
        model=model,
        system=TITLE_PROMPT,
        max_tokens=24,
        messages=[
            ChatMessage(role="user", content=f"User: {first[:2000]}\n\nAssistant: {reply[:2000]}")
        ],
    )
    completion = await collect(providers.provider(endpoint).stream(title_request))
    title = storable_text(completion.text).strip().strip("\"'“”").strip()
    return title[:MAX_TITLE_CHARS] or None
