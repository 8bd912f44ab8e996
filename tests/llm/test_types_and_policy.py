"""Pure parts of the provider layer: types, tool-call assembly, retry policy, error mapping."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from relaychat.llm.adapters.anthropic_messages import to_anthropic_messages
from relaychat.llm.adapters.openai_chat import finish_reason, to_openai_messages
from relaychat.llm.base import RetryPolicy
from relaychat.llm.errors import (
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderStreamBroken,
    ProviderUnavailable,
    error_for_status,
    error_for_type,
    parse_retry_after,
    scrub,
)
from relaychat.llm.types import (
    ChatMessage,
    ChatRequest,
    Finish,
    StreamEvent,
    TextDelta,
    ToolCallAssembler,
    collect,
)


def test_messages_accept_strings_and_stored_parts() -> None:
    stored = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
    ]
    request = ChatRequest(
        model="m",
        messages=[ChatMessage(role="user", content="hi"), ChatMessage(role="user", content=stored)],
    )

    assert request.messages[0].text == "hi"
    assert request.messages[1].text == "look"
    assert ChatRequest.model_validate_json(request.model_dump_json()) == request


def test_assembler_joins_fragments_per_index() -> None:
    tools = ToolCallAssembler()
    tools.feed(1, id="b", name="second", fragment='{"x"')
    tools.feed(0, id="a", name="first", fragment="")
    tools.feed(1, id=None, name=None, fragment=": [1, 2]}")
    tools.feed(2, id="c", name="junk", fragment='{"unterminated')
    tools.feed(3, id="d", name="listy", fragment="[1]")

    calls = tools.pop_all()

    assert [(c.index, c.id, c.name, c.arguments) for c in calls] == [
        (0, "a", "first", {}),
        (1, "b", "second", {"x": [1, 2]}),
        (2, "c", "junk", None),
        (3, "d", "listy", None),
    ]
    assert calls[2].raw_arguments == '{"unterminated'
    assert tools.pop_all() == []


async def test_collect_needs_a_finish() -> None:
    async def no_finish() -> AsyncIterator[StreamEvent]:
        yield TextDelta(text="a")

    async def finished() -> AsyncIterator[StreamEvent]:
        yield TextDelta(text="a")
        yield TextDelta(text="b")
        yield Finish(reason="length", raw_reason="max_tokens")

    with pytest.raises(ValueError, match="finish"):
        await collect(no_finish())
    completion = await collect(finished())
    assert (completion.text, completion.finish_reason) == ("ab", "length")


def test_retry_policy() -> None:
    policy = RetryPolicy(max_retries=2, base_delay=1.0, max_delay=3.0, max_retry_after=10)

    assert policy.delay(0, ProviderBadRequest()) is None
    assert policy.delay(0, ProviderRateLimited(retry_after=4)) == 4
    assert policy.delay(0, ProviderRateLimited(retry_after=11)) is None
    assert policy.delay(2, ProviderUnavailable()) is None
    first = policy.delay(0, ProviderUnavailable())
    second = policy.delay(1, ProviderUnavailable())
    assert first is not None and 0.5 <= first <= 1.0
    assert second is not None and 1.0 <= second <= 2.0
    assert policy.delay(0, ProviderStreamBroken(retryable=True)) is not None
    assert policy.delay(0, ProviderStreamBroken()) is None


def test_parse_retry_after() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)

    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3
    assert 20 < (parse_retry_after({"retry-after": later}) or 0) <= 30
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, ProviderAuthFailed),
        (403, ProviderAuthFailed),
        (400, ProviderBadRequest),
        (404, ProviderBadRequest),
        (429, ProviderRateLimited),
        (408, ProviderUnavailable),
        (500, ProviderUnavailable),
        (529, ProviderUnavailable),
    ],
)
def test_error_for_status(status: int, expected: type[ProviderError]) -> None:
    error = error_for_status(status, message="nope", endpoint="e")

    assert type(error) is expected
    assert error.fields == {"endpoint": "e", "upstream_status": status}


def test_error_for_type_and_problem_shape() -> None:
    error = error_for_type("overloaded_error", message="Overloaded", endpoint="claude")

    assert isinstance(error, ProviderUnavailable)
    assert error.retryable
    problem = error.to_problem()
    assert problem["code"] == "provider_unavailable"
    assert problem["status"] == 503
    assert problem["endpoint"] == "claude"
    json.dumps(problem)
    assert type(error_for_type("weird", message=None)) is ProviderError


def test_scrub_removes_key_like_tokens() -> None:
    message = "Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz0123. Check it."

    assert scrub(message) == "Incorrect API key provided: …. Check it."
    assert scrub("x" * 1000) == "…"
    assert scrub(None) is None


def test_finish_reasons() -> None:
    assert finish_reason("stop", had_tool_calls=False) == "stop"
    assert finish_reason("stop", had_tool_calls=True) == "tool_calls"
    assert finish_reason("function_call", had_tool_calls=True) == "tool_calls"
    assert finish_reason("content_filter", had_tool_calls=False) == "content_filter"
    assert finish_reason("eos_token", had_tool_calls=False) == "stop"


def test_anthropic_history_merges_turns_and_drops_empty_text() -> None:
    messages = [
        ChatMessage(role="user", content="one"),
        ChatMessage(role="user", content="two"),
        ChatMessage(
            role="assistant",
            content=[
                {"type": "text", "text": ""},
                {"type": "tool_call", "id": "t1", "name": "f", "arguments": {"a": 1}},
            ],
        ),
        ChatMessage(
            role="tool", content=[{"type": "tool_result", "tool_call_id": "t1", "content": "ok"}]
        ),
        ChatMessage(role="user", content="thanks"),
    ]

    converted = to_anthropic_messages(messages)

    assert [m["role"] for m in converted] == ["user", "assistant", "user"]
    assert [b["text"] for b in converted[0]["content"]] == ["one", "two"]
    assert converted[1]["content"] == [
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}
    ]
    assert [b["type"] for b in converted[2]["content"]] == ["tool_result", "text"]


def test_openai_history_uses_plain_strings_without_images() -> None:
    request = ChatRequest(
        model="m",
        system="sys",
        messages=[
            ChatMessage(
                role="user", content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
            ),
            ChatMessage(role="assistant", content="c"),
        ],
    )

    assert to_openai_messages(request) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c"},
    ]
