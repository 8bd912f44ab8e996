"""A reply's token counts: the provider's when it reports them, else an estimate.

The estimate is character based, not a tokenizer: tiktoken (the well-kept choice) ships
no encodings in its wheel and downloads them on first use, which a server without
outside access cannot do, and every provider tokenizes differently anyway. It follows
OpenAI's rule of thumb, one token per four characters of English text, rounded up, with
the few tokens of framing OpenAI's cookbook counts per chat message. Counts so made are
marked `estimated` wherever they are stored or shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from relaychat.llm.types import (
    ChatRequest,
    ImageUrlPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)

CHARS_PER_TOKEN = 4
# Each message's role and separators (OpenAI cookbook, "counting tokens for chat models").
TOKENS_PER_MESSAGE = 3
# What OpenAI bills a low-detail image; the size of a high-detail one is unknown here.
TOKENS_PER_IMAGE = 85


@dataclass(frozen=True, slots=True)
class TokenCount:
    """Prompt and completion tokens of one model call or a sum of them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenCount) -> TokenCount:
        """The sum; estimated if either part was."""
        return TokenCount(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.estimated or other.estimated,
        )


def estimate_tokens(text: str) -> int:
    """About how many tokens `text` is: a quarter of its characters, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_prompt(request: ChatRequest) -> int:
    """About how many tokens the provider reads for `request`: prompt, history and tools."""
    total = 0
    if request.system:
        total += TOKENS_PER_MESSAGE + estimate_tokens(request.system)
    for message in request.messages:
        total += TOKENS_PER_MESSAGE
        for part in message.content:
            if isinstance(part, TextPart):
                total += estimate_tokens(part.text)
            elif isinstance(part, ImageUrlPart):
                total += TOKENS_PER_IMAGE
            elif isinstance(part, ToolCallPart):
                total += estimate_tokens(part.name + json.dumps(part.arguments))
            elif isinstance(part, ToolResultPart):
                total += estimate_tokens(part.content)
    if request.tools:
        specs = [tool.model_dump() for tool in request.tools]
        total += estimate_tokens(json.dumps(specs, separators=(",", ":")))
    return total


def count_call(usage: Usage | None, request: ChatRequest, output: str) -> TokenCount:
    """One model call's tokens: the provider's usage, or an estimate from the request and
    the `output` (text and tool-call arguments) when it reported none, or only zeros (as
    OpenAI-compatible servers that ignore `stream_options.include_usage` may)."""
    if usage is not None and usage.total_tokens > 0:
        return TokenCount(usage.prompt_tokens, usage.completion_tokens)
    return TokenCount(estimate_prompt(request), estimate_tokens(output), estimated=True)
