"""The SSE decoder and the OpenAI and Anthropic event readers on their own, without a network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relaychat.llm.adapters.anthropic_messages import _StreamState
from relaychat.llm.adapters.openai_chat import _ChunkReader
from relaychat.llm.adapters.sse_stream import SSEDecoder, SSEEvent
from relaychat.llm.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderStreamBroken,
    ProviderUnavailable,
)
from relaychat.llm.types import ReasoningDelta, TextDelta, ToolCall, ToolCallDelta

# Every rule the decoder follows, in one body: LF, CRLF and CR line ends, comments,
# multi-line data, `data:` without its space, event names, ignored fields, a data-less
# event, and a last event without its blank line.
BODY = (
    b": keep-alive\n\n"
    b"data: one\n\n"
    b"data: crlf\r\n\r\n"
    b"data: cr\r\r"
    b"event: named\ndata:  two spaces\n\n"
    b"data: first\r\ndata: second\r\n\r\n"
    b"id: 7\nretry: 100\nunknown: x\ndata:tight\n\n"
    b"data\n\n"
    b"event: ping\n\n"
    b'data: {"a": 1}\n\n'
    b"data: lost"
)
EVENTS: list[SSEEvent] = [
    (None, b"one"),
    (None, b"crlf"),
    (None, b"cr"),
    ("named", b" two spaces"),
    (None, b"first\nsecond"),
    (None, b"tight"),
    (None, b""),
    (None, b'{"a": 1}'),
]


def decode(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return [event for piece in pieces for event in decoder.feed(piece)]


def test_decoder_follows_the_event_stream_rules() -> None:
    assert decode([BODY]) == EVENTS


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_decoder_gives_the_same_events_however_the_body_is_split(size: int) -> None:
    pieces = [BODY[i : i + size] for i in range(0, len(BODY), size)]

    assert decode(pieces) == EVENTS


def test_decoder_splits_at_every_position() -> None:
    for cut in range(1, len(BODY)):
        assert decode([BODY[:cut], BODY[cut:]]) == EVENTS, cut


def test_a_crlf_split_across_reads_is_one_line_end() -> None:
    decoder = SSEDecoder()

    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n\r") == [(None, b"a\nb")]
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: c\n\n") == [(None, b"c")]


def test_an_event_ended_by_cr_is_not_held_back_for_the_next_read() -> None:
    assert SSEDecoder().feed(b"data: x\r\r") == [(None, b"x")]


def frame(payload: Any) -> SSEEvent:
    return (None, json.dumps(payload).encode())


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> SSEEvent:
    return frame({"choices": [{"index": index, "delta": delta, "finish_reason": finish}]})


def test_reader_turns_chunks_into_events() -> None:
    reader = _ChunkReader("e")
    events = reader.read(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "hmm"}),
            chunk({"reasoning": "still"}),
            chunk({"content": "Hi"}),
            chunk({"content": "other choice"}, index=1),
            frame({"choices": [{"delta": {"content": " there"}}]}),
            chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f"}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x": 1}'}}]}),
            chunk({}, "tool_calls"),
            frame({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": None}}),
            (None, b"[DONE]"),
            chunk({"content": "after the end"}),
        ]
    )

    assert events == [
        ReasoningDelta(text="hmm"),
        ReasoningDelta(text="still"),
        TextDelta(text="Hi"),
        TextDelta(text=" there"),
        ToolCallDelta(index=0, id="c1", name="f", arguments_delta=""),
        ToolCallDelta(index=0, arguments_delta='{"x": 1}'),
    ]
    assert reader.ended
    assert reader.error is None
    assert reader.raw_finish == "tool_calls"
    assert reader.usage is not None
    assert (reader.usage.prompt_tokens, reader.usage.completion_tokens) == (5, 0)
    (call,) = reader.tools.pop_all()
    assert (call.id, call.name, call.arguments) == ("c1", "f", {"x": 1})


def test_reader_keeps_the_events_before_an_error_frame() -> None:
    reader = _ChunkReader("e")
    error = {"message": "Too many", "type": "requests", "code": "rate_limit_exceeded"}
    events = reader.read([chunk({"content": "partial"}), frame({"error": error}), chunk({})])

    assert events == [TextDelta(text="partial")]
    assert isinstance(reader.error, ProviderRateLimited)
    assert reader.error.detail == "Too many"
    assert reader.error.fields["upstream_type"] == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("error", "expected", "detail"),
    [
        ({"message": "Boom", "type": "server_error"}, ProviderUnavailable, "Boom"),
        ({"type": "server_error"}, ProviderUnavailable, "An error occurred during streaming"),
        ("just a string", ProviderError, "An error occurred during streaming"),
    ],
)
def test_error_frames_map_like_the_sdk_did(
    error: Any, expected: type[ProviderError], detail: str
) -> None:
    reader = _ChunkReader("e")
    reader.read([frame({"error": error})])

    assert type(reader.error) is expected
    assert reader.error.detail == detail


@pytest.mark.parametrize(
    "data",
    [
        b"this is not json",
        b"",
        b"[1, 2]",
        b"\xff\xfe not utf-8",
        json.dumps({"choices": [{"index": 0, "delta": {"content": 5}}]}).encode(),
        json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [{"id": "x"}]}}]}).encode(),
        json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": 1}]}).encode(),
        json.dumps({"choices": [], "usage": "lots"}).encode(),
        json.dumps({"choices": "none"}).encode(),
    ],
)
def test_frames_that_are_not_chunks_break_the_stream(data: bytes) -> None:
    reader = _ChunkReader("e")
    events = reader.read([chunk({"content": "ok"}), (None, data), chunk({"content": "never"})])

    assert events == [TextDelta(text="ok")]
    assert isinstance(reader.error, ProviderStreamBroken)
    assert not reader.error.retryable


def anthropic(name: str | None, payload: Any) -> SSEEvent:
    return (name, json.dumps(payload).encode())


def text_delta(text: str) -> SSEEvent:
    delta = {"type": "text_delta", "text": text}
    return anthropic(
        "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
    )


def test_anthropic_state_reads_events_until_message_stop() -> None:
    state = _StreamState("e")
    usage = {"input_tokens": 3, "cache_read_input_tokens": 2, "output_tokens": 1}
    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    json_delta = {"type": "input_json_delta", "partial_json": '{"x": 1}'}
    events = state.read(
        [
            anthropic("message_start", {"type": "message_start", "message": {"usage": usage}}),
            anthropic("ping", {"type": "ping"}),
            (None, b'{"type": "message_stop"}'),  # the SDK ignored unnamed events
            text_delta("Hi"),
            anthropic(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "hm"},
                },
            ),
            anthropic(
                "content_block_start",
                {"type": "content_block_start", "index": 1, "content_block": block},
            ),
            anthropic(
                "content_block_delta",
                {"type": "content_block_delta", "index": 1, "delta": json_delta},
            ),
            anthropic("content_block_stop", {"type": "content_block_stop", "index": 1}),
            ("message_delta", b""),
            anthropic(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 9},
                },
            ),
            anthropic("message_stop", {"type": "message_stop"}),
            text_delta("after the end"),
        ]
    )

    assert [type(e).__name__ for e in events] == [
        "TextDelta",
        "ReasoningDelta",
        "ToolCallDelta",
        "ToolCallDelta",
        "ToolCall",
    ]
    assert events[-1] == ToolCall(
        index=0, id="toolu_1", name="f", arguments={"x": 1}, raw_arguments='{"x": 1}'
    )
    assert state.ended
    assert state.error is None
    assert (state.input_tokens, state.output_tokens, state.stop_reason) == (5, 9, "tool_use")


@pytest.mark.parametrize(
    ("data", "expected", "detail"),
    [
        (
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            ProviderUnavailable,
            "Overloaded",
        ),
        (b"not json", ProviderError, "The model provider returned an error"),
    ],
)
def test_anthropic_error_event_maps_like_the_sdk_did(
    data: bytes, expected: type[ProviderError], detail: str
) -> None:
    state = _StreamState("e")
    events = state.read([text_delta("partial"), ("error", data), text_delta("never")])

    assert events == [TextDelta(text="partial")]
    assert type(state.error) is expected
    assert state.error.detail == detail


@pytest.mark.parametrize(
    "data",
    [
        b"this is not json",
        b"[]",
        b'{"no": "type"}',
        b'{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}',
        b'{"type": "message_delta", "delta": {}, "usage": {"output_tokens": null}}',
    ],
)
def test_anthropic_events_of_another_shape_break_the_stream(data: bytes) -> None:
    state = _StreamState("e")
    events = state.read([text_delta("ok"), ("content_block_delta", data), text_delta("never")])

    assert events == [TextDelta(text="ok")]
    assert isinstance(state.error, ProviderStreamBroken)
    assert not state.error.retryable
