"""Both adapters, through their official SDKs, against the fake upstream over real HTTP."""

from __future__ import annotations

import socket
from contextlib import aclosing
from typing import Any

import pytest

from relaychat.devtools.fake_config import DEFAULT_REPLY, tokenize
from relaychat.devtools.fake_llm import FakeLLM, running_fake_llm
from relaychat.llm.base import RetryPolicy
from relaychat.llm.errors import (
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderStreamBroken,
    ProviderTimeout,
    ProviderUnavailable,
)
from relaychat.llm.types import (
    ChatRequest,
    Finish,
    StreamEvent,
    TextDelta,
    Usage,
    collect,
    stream_event_adapter,
)
from tests.support.adapters import SHORT_TIMEOUTS, AdapterMaker, ask, sent


def base_url(server: FakeLLM, make_adapter: AdapterMaker) -> str:
    """Where an adapter of the current provider finds `server`."""
    return server.openai_base_url if make_adapter().provider == "openai" else server.url


async def events_until_error(
    adapter: Any, request: ChatRequest
) -> tuple[list[StreamEvent], BaseException | None]:
    """Every event before the stream failed, and the error (None if it did not)."""
    seen: list[StreamEvent] = []
    try:
        async for event in adapter.stream(request):
            seen.append(event)
    except ProviderError as exc:
        return seen, exc
    return seen, None


async def test_streams_text_then_usage_then_finish(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    events = [e async for e in make_adapter().stream(ask("hello there", marker))]

    texts = [e for e in events if isinstance(e, TextDelta)]
    assert len(texts) == len(tokenize(DEFAULT_REPLY))
    assert "".join(t.text for t in texts) == DEFAULT_REPLY
    assert isinstance(events[-2], Usage)
    assert events[-2].completion_tokens == len(texts)
    assert events[-2].prompt_tokens > 0
    assert isinstance(events[-1], Finish)
    assert events[-1].reason == "stop"
    for event in events:
        assert stream_event_adapter.validate_json(stream_event_adapter.dump_json(event)) == event
    assert len(sent(fake, marker)) == 1


async def test_max_tokens_cuts_the_reply_with_finish_length(
    make_adapter: AdapterMaker, marker: str
) -> None:
    completion = await collect(make_adapter().stream(ask("hi", marker, max_tokens=3)))

    assert completion.text == "".join(tokenize(DEFAULT_REPLY)[:3])
    assert completion.finish_reason == "length"


async def test_echo_sends_the_user_text_back(make_adapter: AdapterMaker, marker: str) -> None:
    completion = await collect(make_adapter().stream(ask("say  this", marker, {"echo": True})))

    assert completion.text == f"say  this [{marker}]"


async def test_error_event_mid_stream_raises_after_partial_output(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    directive = {"fail": "error_event", "fail_after_tokens": 3}
    events, error = await events_until_error(make_adapter(), ask("hi", marker, directive))

    assert [type(e) for e in events] == [TextDelta] * 3
    assert isinstance(error, ProviderUnavailable)
    assert len(sent(fake, marker)) == 1, "never retried after output was shown"


async def test_error_event_before_any_output_is_retried(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    directive = {"fail": "error_event", "fail_after_tokens": 0, "fail_times": 1}
    completion = await collect(make_adapter().stream(ask("hi", marker, directive)))

    assert completion.text == DEFAULT_REPLY
    assert len(sent(fake, marker)) == 2


async def test_401_is_not_retried(make_adapter: AdapterMaker, fake: FakeLLM, marker: str) -> None:
    _, error = await events_until_error(make_adapter(), ask("hi", marker, {"fail": "auth"}))

    assert isinstance(error, ProviderAuthFailed)
    # Gemini says 400 with reason API_KEY_INVALID where the others say 401.
    assert error.fields["upstream_status"] in (400, 401)
    assert error.code == "provider_auth_failed"
    assert len(sent(fake, marker)) == 1


async def test_wrong_key_is_auth_failed(make_adapter: AdapterMaker, marker: str) -> None:
    async with running_fake_llm(api_key="the-right-key") as strict:
        wrong = make_adapter(api_key="the-wrong-key", base_url=base_url(strict, make_adapter))
        right = make_adapter(api_key="the-right-key", base_url=base_url(strict, make_adapter))

        _, error = await events_until_error(wrong, ask("hi", marker))

        assert isinstance(error, ProviderAuthFailed)
        assert (await collect(right.stream(ask("hi", marker)))).text == DEFAULT_REPLY


async def test_429_then_success_is_retried(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    directive = {"fail": "rate_limit", "fail_times": 1, "retry_after_ms": 20}
    completion = await collect(make_adapter().stream(ask("hi", marker, directive)))

    assert completion.text == DEFAULT_REPLY
    assert len(sent(fake, marker)) == 2


async def test_429_every_time_gives_up_with_retry_after(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    directive = {"fail": "rate_limit", "retry_after_ms": 20}
    _, error = await events_until_error(make_adapter(), ask("hi", marker, directive))

    assert isinstance(error, ProviderRateLimited)
    assert error.retry_after == pytest.approx(0.02)
    assert error.status == 429
    assert error.headers == {"Retry-After": "1"}
    assert len(sent(fake, marker)) == 3, "one call and two retries"


async def test_long_retry_after_is_passed_on_not_slept(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    directive = {"fail": "rate_limit", "retry_after_ms": 120_000}
    _, error = await events_until_error(make_adapter(), ask("hi", marker, directive))

    assert isinstance(error, ProviderRateLimited)
    assert error.retry_after == pytest.approx(120)
    assert len(sent(fake, marker)) == 1


@pytest.mark.parametrize("failure", ["server_error", "unavailable"])
async def test_5xx_is_retried_then_reported(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str, failure: str
) -> None:
    _, error = await events_until_error(make_adapter(), ask("hi", marker, {"fail": failure}))

    assert isinstance(error, ProviderUnavailable)
    assert error.fields["upstream_status"] >= 500
    assert len(sent(fake, marker)) == 3


async def test_500_then_success(make_adapter: AdapterMaker, fake: FakeLLM, marker: str) -> None:
    directive = {"fail": "server_error", "fail_times": 2}
    completion = await collect(make_adapter().stream(ask("hi", marker, directive)))

    assert completion.finish_reason == "stop"
    assert len(sent(fake, marker)) == 3


async def test_no_retries_when_the_policy_says_none(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    adapter = make_adapter(retry=RetryPolicy(max_retries=0))
    _, error = await events_until_error(adapter, ask("hi", marker, {"fail": "server_error"}))

    assert isinstance(error, ProviderUnavailable)
    assert len(sent(fake, marker)) == 1


async def test_400_is_bad_request(make_adapter: AdapterMaker, marker: str) -> None:
    _, error = await events_until_error(make_adapter(), ask("hi", marker, {"fail": "bad_request"}))

    assert isinstance(error, ProviderBadRequest)
    assert error.status == 400


async def test_cut_stream_is_broken_and_not_retried(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    events, error = await events_until_error(make_adapter(), ask("hi", marker, {"fail": "cut"}))

    assert [type(e) for e in events] == [TextDelta, TextDelta]
    assert isinstance(error, ProviderStreamBroken)
    assert len(sent(fake, marker)) == 1


async def test_cut_before_any_output_is_retried(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    directive = {"fail": "cut", "fail_after_tokens": 0, "fail_times": 1}
    completion = await collect(make_adapter().stream(ask("hi", marker, directive)))

    assert completion.text == DEFAULT_REPLY
    assert len(sent(fake, marker)) == 2


async def test_garbage_frame_is_broken_stream(
    make_adapter: AdapterMaker, fake: FakeLLM, marker: str
) -> None:
    events, error = await events_until_error(
        make_adapter(), ask("hi", marker, {"fail": "garbage", "fail_after_tokens": 1})
    )

    assert [type(e) for e in events] == [TextDelta]
    assert isinstance(error, ProviderStreamBroken)
    assert not error.retryable
    assert len(sent(fake, marker)) == 1


async def test_hang_before_first_token_times_out(make_adapter: AdapterMaker, marker: str) -> None:
    adapter = make_adapter(timeouts=SHORT_TIMEOUTS)
    events, error = await events_until_error(adapter, ask("hi", marker, {"fail": "hang"}))

    assert events == []
    assert isinstance(error, ProviderTimeout)
    assert "first token" in error.detail


async def test_silence_between_chunks_times_out(make_adapter: AdapterMaker, marker: str) -> None:
    adapter = make_adapter(timeouts=SHORT_TIMEOUTS)
    events, error = await events_until_error(adapter, ask("hi", marker, {"fail": "stall"}))

    assert len(events) == 2
    assert isinstance(error, ProviderTimeout)
    assert "between chunks" in error.detail


async def test_nothing_listening_is_unavailable(make_adapter: AdapterMaker, marker: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = make_adapter(base_url=f"http://127.0.0.1:{port}/v1")

    _, error = await events_until_error(adapter, ask("hi", marker))

    assert isinstance(error, ProviderUnavailable)


async def test_closing_early_releases_the_stream(make_adapter: AdapterMaker, marker: str) -> None:
    adapter = make_adapter()
    async with aclosing(adapter.stream(ask("hi", marker, {"token_delay_ms": 5}))) as events:
        async for event in events:
            assert isinstance(event, TextDelta)
            break
    # The same adapter keeps working afterwards.
    assert (await collect(adapter.stream(ask("again", marker)))).finish_reason == "stop"


async def test_list_models(make_adapter: AdapterMaker) -> None:
    assert await make_adapter().list_models() == ["fake-model", "fake-model-mini"]


async def test_list_models_with_bad_key_is_auth_failed(make_adapter: AdapterMaker) -> None:
    async with running_fake_llm(api_key="right") as strict:
        adapter = make_adapter(api_key="wrong", base_url=base_url(strict, make_adapter))
        with pytest.raises(ProviderAuthFailed):
            await adapter.list_models()
